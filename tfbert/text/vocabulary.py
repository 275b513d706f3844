"""Learning a WordPiece vocabulary from text.

Words are counted after the very normalization and splitting `BertTokenizer`
applies, so the learned pieces are the ones the tokenizer will look up; the
pieces are then chosen by tensorflow-text's WordPiece learner (the algorithm
behind keras-nlp's `compute_word_piece_vocabulary` and tensorflow-text's
`bert_vocab_from_dataset`).
"""

import collections
import os

import numpy as np
import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib

from tfbert.files import atomic_path
from tfbert.text.bert_tokenizer import SPECIAL_TOKENS
from tfbert.text.normalization import normalize_text, split_words


def _text_batches(texts_or_dataset, batch_size):
    if isinstance(texts_or_dataset, tf.data.Dataset):
        dataset = texts_or_dataset
        spec = dataset.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
            raise ValueError(
                "`texts_or_dataset` must be a dataset of strings; its elements are "
                f"{spec}. Map it to the text feature first, e.g. "
                "`dataset.map(lambda x, y: x)`."
            )
        if spec.shape.rank == 0:
            dataset = dataset.batch(batch_size)
        elif spec.shape.rank != 1:
            raise ValueError(f"Dataset elements must be strings of rank 0 or 1; got {spec}.")
        yield from dataset
        return
    if isinstance(texts_or_dataset, str) or not isinstance(
        texts_or_dataset, (list, tuple, np.ndarray)
    ):
        raise ValueError(
            "`texts_or_dataset` must be a list of strings or a tf.data.Dataset of "
            f"strings; received {type(texts_or_dataset).__name__}."
        )
    texts = list(texts_or_dataset)
    for start in range(0, len(texts), batch_size):
        yield tf.constant(
            [
                text.encode("utf-8") if isinstance(text, str) else text
                for text in texts[start : start + batch_size]
            ],
            tf.string,
        )


def count_words(texts_or_dataset, lowercase=True, strip_accents=None, batch_size=1024):
    """Counts BERT-normalized words: {word: count}."""
    counts = collections.Counter()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def unique_words(texts):
        words = split_words(normalize_text(texts, lowercase, strip_accents)).flat_values
        unique, _, word_counts = tf.unique_with_counts(words)
        return unique, word_counts

    for batch in _text_batches(texts_or_dataset, batch_size):
        unique, word_counts = unique_words(batch)
        for word, count in zip(unique.numpy(), word_counts.numpy(), strict=True):
            counts[word.decode("utf-8")] += int(count)
    return counts


def build_vocabulary(
    texts_or_dataset,
    vocabulary_size: int,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    reserved_tokens=SPECIAL_TOKENS,
    vocabulary_file=None,
    max_word_length: int = 50,
) -> list[str]:
    """Learns a WordPiece vocabulary that `BertTokenizer` loads.

    Args:
        texts_or_dataset: list of strings, or a `tf.data.Dataset` of strings
            (single or batched).
        vocabulary_size: int. Most tokens to keep; the learner lands within
            about 5% below it when the text has enough distinct words.
        lowercase, strip_accents: normalization, as in `BertTokenizer`.
        reserved_tokens: tokens placed first, in order; must include BERT's
            special tokens [PAD], [UNK], [CLS], [SEP] and [MASK].
        vocabulary_file: path to write as `vocab.txt` (one token per line);
            an existing file is never overwritten.
        max_word_length: int, default 50. Longer words are not counted.

    Returns:
        The tokens, reserved tokens first.
    """
    reserved_tokens = list(reserved_tokens)
    missing = [token for token in SPECIAL_TOKENS if token not in reserved_tokens]
    if missing:
        raise ValueError(
            f"`reserved_tokens` lacks {missing}; `BertTokenizer` needs all of "
            f"{list(SPECIAL_TOKENS)}."
        )
    if not isinstance(vocabulary_size, int) or vocabulary_size <= len(reserved_tokens):
        raise ValueError(
            f"`vocabulary_size` must be an integer larger than the {len(reserved_tokens)} "
            f"reserved tokens; received {vocabulary_size!r}."
        )
    if vocabulary_file is not None and os.path.exists(vocabulary_file):
        raise FileExistsError(
            f"{os.fspath(vocabulary_file)!r} exists; choose a new path or delete it first."
        )
    counts = count_words(texts_or_dataset, lowercase, strip_accents)
    if not counts:
        raise ValueError("The text holds no words to learn a vocabulary from.")
    # The learner binary-searches a count threshold for pieces; starting it
    # at the count of the (size / 4)-th most common word, not the most
    # common one, saves most of its (pure Python) passes over the words.
    ranked = sorted(counts.values(), reverse=True)
    vocabulary = wordpiece_tokenizer_learner_lib.learn(
        counts.items(),
        vocab_size=vocabulary_size,
        reserved_tokens=reserved_tokens,
        upper_thresh=max(2, ranked[min(len(ranked) - 1, vocabulary_size // 4)]),
        lower_thresh=1,
        max_token_length=max_word_length,
        # Chinese text needs thousands of characters; keep as many as fit.
        max_unique_chars=vocabulary_size - len(reserved_tokens),
    )
    # Learned pieces come last, most frequent first: drop the rarest to fit.
    vocabulary = vocabulary[:vocabulary_size]
    if vocabulary_file is not None:
        with atomic_path(vocabulary_file, overwrite=False) as staging:
            with open(staging, "w", encoding="utf-8") as f:
                f.write("\n".join(vocabulary) + "\n")
    return vocabulary
