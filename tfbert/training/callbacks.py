"""Callbacks that make long `fit` runs safe to kill and easy to watch.

callbacks = training_callbacks("runs/bert", global_batch_size=256)
dataset = skip_epochs(dataset, TrainingBackup.completed_epochs("runs/bert/backup"))
model.fit(dataset, epochs=40, callbacks=callbacks)
"""

import json
import math
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from tfbert.training.distributed_fit import is_chief

_METADATA = "training_metadata.json"


def _seed_generators(model) -> list:
    """Every `keras.random.SeedGenerator` of `model`'s layers, in a fixed order."""
    generators = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        generators.extend(getattr(layer, "_seed_generators", []))
    return generators


def save_atomically(model, filepath: str, weights_only: bool = False) -> None:
    """Saves `model` (or its weights) to `filepath` so that the file is either
    the old one or the complete new one, never half written: the save goes to
    a temporary file in the same folder, renamed over `filepath` at the end.

    In multi-worker training only the chief writes `filepath`; the other
    workers save into a throwaway folder, since reading distributed
    variables may need their part of a collective.
    """
    if not is_chief(model.distribute_strategy):
        scratch = tempfile.mkdtemp(prefix="tfbert-worker-")
        try:
            _save(model, os.path.join(scratch, os.path.basename(filepath)), weights_only)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    folder = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    staged = os.path.join(folder, f".staged-{os.getpid()}-{os.path.basename(filepath)}")
    try:
        _save(model, staged, weights_only)
        os.replace(staged, filepath)
    finally:
        if os.path.exists(staged):
            os.remove(staged)


def _save(model, path, weights_only):
    if weights_only:
        model.save_weights(path, overwrite=True)
    else:
        model.save(path, overwrite=True)


class TrainingBackup(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that resumes exactly and safely.

    At the end of every epoch it backs up the weights, the optimizer state
    and the random-number state of every layer (dropout), then records them
    as the latest backup in `training_metadata.json`, replaced atomically:
    a kill at any moment leaves the previous complete backup in charge. On
    multi-worker clusters only the chief writes. When `fit` starts, the latest
    backup is restored and training continues with the next epoch; with
    `skip_epochs(dataset, TrainingBackup.completed_epochs(backup_dir))` the
    dataset's shuffling and masking also continue where they were, so a
    killed and restarted run ends with the weights of an uninterrupted one.

    Back up more often than once per epoch by making epochs shorter
    (`fit(dataset.repeat(), steps_per_epoch=...)`).

    Args:
        backup_dir: str. Folder for the backups (created when missing).
        delete_checkpoint: bool, default True. Delete the backups when
            training finishes.
    """

    def __init__(self, backup_dir: str, delete_checkpoint: bool = True):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)

    @staticmethod
    def completed_epochs(backup_dir: str) -> int:
        """Epochs completed by the latest backup in `backup_dir` (0 when none)."""
        path = os.path.join(backup_dir, _METADATA)
        if not os.path.exists(path):
            return 0
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["epoch"])

    def on_train_begin(self, logs=None):
        self._load_model()

    def _load_model(self):
        path = os.path.join(self.backup_dir, _METADATA)
        if not os.path.exists(path):
            return
        if not self.model.built:
            raise ValueError(
                "TrainingBackup found a backup to restore but the model is not built; "
                "build it (call it on one batch) before fit()."
            )
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(os.path.join(self.backup_dir, metadata["weights"]))
        except ValueError as error:
            raise ValueError(
                f"The backup in {self.backup_dir!r} (epoch {metadata['epoch']}) does not fit "
                f"this model: {error}. Point TrainingBackup at a new folder, or delete "
                "this one to start over."
            ) from None
        states = np.load(os.path.join(self.backup_dir, metadata["random_state"]))
        generators = _seed_generators(self.model)
        if len(states.files) != len(generators):
            raise ValueError(
                f"The backup in {self.backup_dir!r} holds {len(states.files)} random "
                f"states, the model has {len(generators)} seed generators: not the same model."
            )
        for index, generator in enumerate(generators):
            generator.state.assign(states[f"state_{index}"])
        self.model._initial_epoch = int(metadata["epoch"])

    def _save_model(self):
        epoch = self._current_epoch
        if is_chief(self.model.distribute_strategy):
            os.makedirs(self.backup_dir, exist_ok=True)
            self._write(self.backup_dir, epoch)
            return
        scratch = tempfile.mkdtemp(prefix="tfbert-worker-")
        try:
            self._write(scratch, epoch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _write(self, folder: str, epoch: int):
        weights = f"epoch-{epoch}.weights.h5"
        random_state = f"epoch-{epoch}.random.npz"
        staged = os.path.join(folder, f".staged-{weights}")
        self.model.save_weights(staged, overwrite=True)
        os.replace(staged, os.path.join(folder, weights))
        states = {
            f"state_{i}": keras.ops.convert_to_numpy(generator.state.value)
            for i, generator in enumerate(_seed_generators(self.model))
        }
        staged = os.path.join(folder, f".staged-{random_state}")
        with open(staged, "wb") as f:
            np.savez(f, **states)
        os.replace(staged, os.path.join(folder, random_state))
        metadata = {"epoch": epoch, "weights": weights, "random_state": random_state}
        staged = os.path.join(folder, f".staged-{_METADATA}")
        with open(staged, "w", encoding="utf-8") as f:
            json.dump(metadata, f)
        os.replace(staged, os.path.join(folder, _METADATA))  # the commit point
        for name in os.listdir(folder):
            if name.startswith("epoch-") and name not in (weights, random_state):
                os.remove(os.path.join(folder, name))

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and is_chief(self.model.distribute_strategy):
            shutil.rmtree(self.backup_dir, ignore_errors=True)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that never leaves a half-written file
    under the checkpoint's name (see `save_atomically`) and writes on the
    chief only in multi-worker training. Same arguments."""

    def _save_model(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            save_atomically(self.model, filepath, self.save_weights_only)


class TrainingMonitor(keras.callbacks.Callback):
    """Adds `learning_rate` and `examples_per_second` to the logs (so that a
    `TensorBoard` callback after it records them) and stops with a clear
    message when the loss becomes NaN or infinite.

    Args:
        global_batch_size: int. Examples per step over all replicas.
        raise_error: bool, default True. Raise `FloatingPointError` on a NaN
            loss (after the message); False stops `fit` gracefully instead.
    """

    def __init__(self, global_batch_size: int, raise_error: bool = True):
        super().__init__()
        self.global_batch_size = global_batch_size
        self.raise_error = raise_error
        self.nan_message = None

    def _learning_rate(self) -> float:
        optimizer = self.model.optimizer
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.nan_message = (
            f"The training loss became {float(loss)} at epoch {self._epoch + 1}, batch "
            f"{batch + 1} (optimizer step {step}, learning rate {self._learning_rate():.3g}). "
            "Lower the learning rate or its warmup, keep gradient clipping on, check the "
            "data for empty or broken examples, or train in float32 to rule out overflow."
        )
        print(f"\n{self.nan_message}", flush=True)
        self.model.stop_training = True
        if self.raise_error:
            raise FloatingPointError(self.nan_message)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = time.perf_counter() - self._epoch_start
        logs["learning_rate"] = self._learning_rate()
        if seconds > 0 and self._batches:
            logs["examples_per_second"] = self._batches * self.global_batch_size / seconds


def training_callbacks(
    output_dir: str,
    global_batch_size: int,
    strategy=None,
    backup: bool = True,
    tensorboard: bool = True,
    checkpoint: bool = True,
) -> list:
    """The callbacks `tfbert pretrain` trains with, for any Keras `fit`.

    `TrainingMonitor` (learning rate, examples/s, NaN stop), `TrainingBackup`
    in `output_dir/backup`, `AtomicModelCheckpoint` of the whole model in
    `output_dir/checkpoint.keras` after every epoch, and `TensorBoard` logs
    in `output_dir/logs` (written by the chief only).
    """
    callbacks = [TrainingMonitor(global_batch_size)]
    if backup:
        callbacks.append(TrainingBackup(os.path.join(output_dir, "backup")))
    if checkpoint:
        callbacks.append(AtomicModelCheckpoint(os.path.join(output_dir, "checkpoint.keras")))
    if tensorboard and is_chief(strategy):
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")))
    return callbacks


def skip_epochs(dataset, epochs: int):
    """`dataset` advanced past the randomness (shuffle order, `pretraining_dataset`'s
    masks) that `epochs` epochs of `fit` drew, for a run resumed after them.

    Each new iterator of a tf.data pipeline with `reshuffle_each_iteration`
    or `rerandomize_each_iteration` draws the next seeds, and opening an
    iterator reads no data. Keras 3.15's `fit` opens two iterators per epoch
    of a dataset of known length (the epoch's, and one it opens at the end
    of the epoch and drops), so a run resumed after `epochs` epochs skips
    `2 * epochs`; the resume test in tests/training checks this against an
    uninterrupted run, so a Keras upgrade that changes it fails there.
    """
    for _ in range(2 * epochs):
        iter(dataset)
    return dataset
