"""Task-specific distillation data: unlabeled in-domain text labeled by the teacher.

TinyBERT (Jiao et al., 2020) distills a fine-tuned teacher on a much larger
augmented task set, the teacher's predictions serving as the student's
targets. Here the augmentation is real in-domain text without labels, e.g.
the sentences of IMDB reviews for a Rotten Tomatoes sentiment classifier:

    texts = in_domain_sentences(text for text, _ in movie_reviews("imdb"))
    dataset = teacher_labeled_dataset(teacher, tokenizer, texts, batch_size=32)
    student.compile("adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    student.fit(dataset, epochs=3)

The teacher runs once over the text; the student then trains on the soft
labels for as many epochs as wanted (TinyBERT's prediction-layer loss:
soft cross-entropy at temperature 1). For the intermediate-layer losses the
teacher must run alongside: `BertDistiller(...).fit(dataset)` with
`student_loss_weight=0.0` uses the inputs and ignores the labels.
"""

import numpy as np
import tensorflow as tf  # tf.data

from tfbert.text.sentences import split_sentences


def in_domain_sentences(texts, min_words: int = 4, max_sentences: int | None = None) -> list[str]:
    """The distinct sentences of `texts` with at least `min_words` words, in order.

    Args:
        texts: iterable of str (documents such as IMDB reviews; HTML line
            breaks are removed by `tfbert.text.split_sentences`).
        min_words: int, default 4. Shorter fragments ("Wow.") are dropped.
        max_sentences: int or None. Stop after this many.
    """
    if not isinstance(min_words, int) or min_words < 1:
        raise ValueError(f"`min_words` must be a positive integer; received {min_words!r}.")
    if max_sentences is not None and (not isinstance(max_sentences, int) or max_sentences < 1):
        raise ValueError(
            f"`max_sentences` must be None or a positive integer; received {max_sentences!r}."
        )
    seen, sentences = set(), []
    for text in texts:
        for sentence in split_sentences(text):
            if len(sentence.split()) >= min_words and sentence not in seen:
                seen.add(sentence)
                sentences.append(sentence)
                if max_sentences is not None and len(sentences) == max_sentences:
                    return sentences
    return sentences


def _softmax(logits, temperature):
    scaled = logits.astype("float64") / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    probabilities = np.exp(scaled)
    return (probabilities / probabilities.sum(axis=-1, keepdims=True)).astype("float32")


def teacher_labeled_dataset(
    teacher,
    tokenizer,
    texts,
    batch_size: int = 32,
    temperature: float = 1.0,
    shuffle_seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched dataset of (inputs, teacher probabilities) for the student.

    Args:
        teacher: a trained classifier returning logits (B, C), e.g. a
            `BertClassifier`.
        tokenizer: `tfbert.text.BertTokenizer` of the teacher's vocabulary.
        texts: list of str, unlabeled in-domain text (`in_domain_sentences`).
        batch_size: int, default 32. Also the teacher's prediction batch.
        temperature: float, default 1.0. The targets are
            softmax(teacher logits / temperature).
        shuffle_seed: int or None. Shuffle the examples (every epoch) with it.
        drop_remainder: bool, default False. True gives static batch shapes
            (TPU).

    Example:
        dataset = teacher_labeled_dataset(teacher, tokenizer, sentences, batch_size=32)
        student.compile("adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        student.fit(dataset, epochs=3)
    """
    texts = list(texts)
    if not texts or not all(isinstance(text, str) for text in texts):
        raise ValueError("`texts` must be a non-empty list of strings.")
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"`temperature` must be a positive number; received {temperature!r}.")
    inputs = {name: np.asarray(value) for name, value in tokenizer(texts).items()}
    logits = np.asarray(teacher.predict(inputs, batch_size=batch_size, verbose=0))
    if logits.ndim != 2:
        raise ValueError(
            f"`teacher` must return logits (batch, classes); it returned shape {logits.shape}."
        )
    dataset = tf.data.Dataset.from_tensor_slices((inputs, _softmax(logits, temperature)))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(texts), seed=shuffle_seed)
    return dataset.batch(batch_size, drop_remainder=drop_remainder)
