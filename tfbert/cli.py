"""The `tfbert` command.

tfbert quickstart   the whole path on the embedded default data
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _new_run_dir(parent: str) -> str:
    """A fresh `parent/<timestamp>` folder; earlier runs are never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, suffix = os.path.join(parent, stamp), 1
    while os.path.exists(path):
        suffix += 1
        path = os.path.join(parent, f"{stamp}-{suffix}")
    os.makedirs(path)
    return path


class _EpochTable:
    """Collects per-epoch logs from `fit` and prints them as one table."""

    COLUMNS = ("mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy")

    def __init__(self, history):
        self.history = history.history

    def render(self) -> str:
        names = [*self.COLUMNS, *(f"val_{name}" for name in self.COLUMNS)]
        names = [name for name in names if name in self.history]
        lines = ["epoch " + " ".join(f"{name:>16}" for name in names)]
        for epoch in range(len(self.history[names[0]])):
            values = " ".join(f"{self.history[name][epoch]:16.4f}" for name in names)
            lines.append(f"{epoch + 1:5d} {values}")
        return "\n".join(lines)


def quickstart(args) -> int:
    """Pretrains a small BERT (MLM + NSP) with `fit` on IMDB reviews."""
    import keras

    from tfbert.models import BertBackbone, BertPretrainer
    from tfbert.text import (
        BertTokenizer,
        build_vocabulary,
        movie_reviews,
        pretraining_dataset,
        write_pretraining_text,
    )
    from tfbert.training import WarmupPolynomialDecay, create_adamw, resolve_precision

    run_dir = _new_run_dir(args.output_dir)
    keras.utils.set_random_seed(args.seed)
    precision = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(precision)
    print(f"tfbert quickstart -> {run_dir} (precision {precision})")

    print(f"[1/5] Corpus: {args.documents} IMDB reviews from the movie-reviews package")
    reviews = [text for text, _ in movie_reviews("imdb")[: args.documents]]
    held_out = max(2, len(reviews) // 20)
    train_file = os.path.join(run_dir, "pretraining_train.txt")
    validation_file = os.path.join(run_dir, "pretraining_validation.txt")
    sentences = write_pretraining_text(reviews[:-held_out], train_file)
    write_pretraining_text(reviews[-held_out:], validation_file)
    print(f"      {sentences} sentences, one per line, documents separated by blank lines")

    print(f"[2/5] Vocabulary: WordPiece, at most {args.vocabulary_size} tokens, uncased")
    vocabulary_file = os.path.join(run_dir, "vocab.txt")
    started = time.perf_counter()
    vocabulary = build_vocabulary(
        reviews[:-held_out], args.vocabulary_size, vocabulary_file=vocabulary_file
    )
    print(
        f"      {len(vocabulary)} tokens learned from the training reviews in "
        f"{time.perf_counter() - started:.0f} s"
    )
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=args.sequence_length)
    options = dict(whole_word_masking=True, seed=args.seed)
    train = pretraining_dataset(
        train_file, tokenizer, args.sequence_length, args.batch_size, **options
    )
    validation = pretraining_dataset(
        validation_file, tokenizer, args.sequence_length, args.batch_size, **options
    )
    steps = int(train.cardinality())
    if args.max_steps:
        steps = min(steps, args.max_steps)
        train = train.take(steps)
    print(
        f"      {steps} batches of {args.batch_size} x {args.sequence_length} per epoch, "
        f"{int(validation.cardinality())} held out; whole-word masking"
    )

    print(f"[3/5] Pretraining {args.preset} (masked LM + next sentence) with fit")
    backbone = BertBackbone.from_preset(
        args.preset,
        vocabulary_size=tokenizer.vocabulary_size,
        max_sequence_length=max(args.sequence_length, 128),
    )
    pretrainer = BertPretrainer(backbone)
    total_steps = steps * args.epochs
    schedule = WarmupPolynomialDecay(
        args.learning_rate, warmup_steps=max(1, total_steps // 10), total_steps=total_steps
    )
    pretrainer.compile(optimizer=create_adamw(schedule))
    print(f"      {backbone.count_params():,} backbone parameters")
    started = time.perf_counter()
    history = pretrainer.fit(
        train,
        validation_data=validation,
        epochs=args.epochs,
        shuffle=False,  # the dataset reshuffles itself each epoch
        verbose=args.verbose,
    )
    elapsed = time.perf_counter() - started
    table = _EpochTable(history)
    print(table.render())
    mlm = history.history["mlm_loss"]
    print(
        f"      masked-LM loss {mlm[0]:.3f} -> {mlm[-1]:.3f} in {elapsed:.0f} s "
        f"({total_steps * args.batch_size / elapsed:.0f} sequences/s)"
    )

    model_path = os.path.join(run_dir, "pretrainer.keras")
    pretrainer.save(model_path)
    print(f"      saved {model_path}")

    print("[4/5] Fine-tuning the pretrained backbone: Rotten Tomatoes sentiment")
    sentiment = _fine_tune_sentiment(backbone, vocabulary_file, args)
    sentiment_path = os.path.join(run_dir, "sentiment.keras")
    sentiment.save(sentiment_path)

    print("[5/5] Raw text in, labels out (TextClassifier, tokenizer inside the model)")
    examples = ["A warm, funny and moving film.", "Dull, overlong and badly acted."]
    for text, label in zip(examples, sentiment.predict_labels(examples), strict=True):
        print(f"      {label:>8}: {text}")
    print(f"      saved {sentiment_path}\n      {vocabulary_file}")
    return 0


def _fine_tune_sentiment(backbone, vocabulary_file, args):
    """Fine-tunes `backbone` on a fixed 80/20 Rotten Tomatoes split; returns a TextClassifier."""
    import numpy as np

    from tfbert.models import BertClassifier, TextClassifier
    from tfbert.text import BertTokenizer, movie_reviews
    from tfbert.training import WarmupPolynomialDecay, create_adamw

    reviews = movie_reviews("rotten_tomatoes")
    order = np.random.default_rng(args.seed).permutation(len(reviews))
    if args.finetune_examples:
        order = order[: args.finetune_examples]
    cut = int(0.8 * len(order))
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=64)

    def arrays(indices):
        x = tokenizer([reviews[i][0] for i in indices])
        return {k: v.numpy() for k, v in x.items()}, np.array([reviews[i][1] for i in indices])

    (x, y), (test_x, test_y) = arrays(order[:cut]), arrays(order[cut:])
    classifier = BertClassifier(backbone, num_classes=2)
    steps = args.finetune_epochs * -(-len(y) // args.batch_size)
    classifier.compile(
        optimizer=create_adamw(WarmupPolynomialDecay(1e-4, max(1, steps // 10), steps))
    )
    print(f"      {len(y)} sentences to train on, {len(test_y)} held out")
    classifier.fit(
        x, y, batch_size=args.batch_size, epochs=args.finetune_epochs, verbose=args.verbose
    )
    _, accuracy = classifier.evaluate(test_x, test_y, verbose=0)
    print(f"      held-out accuracy {accuracy:.3f} (chance 0.5)")
    return TextClassifier(tokenizer, classifier, label_names=["negative", "positive"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfbert", description="BERT on Keras 3: pretrain, fine-tune, compress, export."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser(
        "quickstart", help="run the whole path on the embedded default data"
    )
    start.add_argument(
        "--output-dir",
        default="runs/quickstart",
        help="parent folder; each run gets a new timestamped folder",
    )
    start.add_argument(
        "--documents", type=int, default=2000, help="IMDB reviews to pretrain on (5%% held out)"
    )
    start.add_argument(
        "--vocabulary-size", type=int, default=8000, help="WordPiece tokens to learn"
    )
    start.add_argument("--preset", default="bert_tiny")
    start.add_argument("--sequence-length", type=int, default=128)
    start.add_argument("--batch-size", type=int, default=32)
    start.add_argument("--epochs", type=int, default=4)
    start.add_argument(
        "--max-steps", type=int, default=0, help="cap on batches per epoch (0: all)"
    )
    start.add_argument("--learning-rate", type=float, default=1e-3)
    start.add_argument("--finetune-epochs", type=int, default=2)
    start.add_argument(
        "--finetune-examples",
        type=int,
        default=0,
        help="Rotten Tomatoes sentences to use, 20%% held out (0: all 8,530)",
    )
    start.add_argument(
        "--precision", default="auto", help="auto, float32, mixed_bfloat16 or mixed_float16"
    )
    start.add_argument("--seed", type=int, default=0)
    start.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=[0, 1, 2],
        help="Keras fit verbosity (1: progress bar)",
    )
    start.set_defaults(run=quickstart)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import tfbert  # noqa: F401  (pins the Keras backend before anything else)

    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
