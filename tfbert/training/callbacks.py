"""Callbacks that make long `fit` runs safe to kill and easy to watch.

callbacks = training_callbacks("runs/bert", global_batch_size=256, backup_steps=500)
backup = next(c for c in callbacks if isinstance(c, TrainingBackup))
model.fit(backup.resume(dataset), epochs=40, callbacks=callbacks)
"""

import json
import math
import os
import shutil
import tempfile
import time
import warnings

import keras
import numpy as np

from tfbert.files import atomic_path
from tfbert.training.distributed_fit import is_chief

_METADATA = "training_metadata.json"


def _seed_generators(model) -> list:
    """Every `keras.random.SeedGenerator` of `model`'s layers, in a fixed order."""
    generators = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        generators.extend(getattr(layer, "_seed_generators", []))
    return generators


def _written_by_chief(model, write) -> None:
    """Runs `write(folder)` into the real folder on the chief; other workers of
    a multi-worker cluster write into a throwaway folder (reading distributed
    variables may need their part of a collective)."""
    if is_chief(model.distribute_strategy):
        write(None)
        return
    scratch = tempfile.mkdtemp(prefix="tfbert-worker-")
    try:
        write(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def save_atomically(model, filepath: str, weights_only: bool = False) -> None:
    """Saves `model` (or its weights) to `filepath` so that the file is either
    the old one or the complete new one, never half written (`atomic_path`).

    In multi-worker training only the chief writes `filepath`.
    """

    def write(scratch):
        path = filepath if scratch is None else os.path.join(scratch, os.path.basename(filepath))
        with atomic_path(path) as staging:
            _save(model, staging, weights_only)

    _written_by_chief(model, write)


def _save(model, path, weights_only):
    # Keras picks the format from the file name's ending; the staging name
    # ends like the real one.
    if weights_only:
        model.save_weights(path, overwrite=True)
    else:
        model.save(path, overwrite=True)


class TrainingBackup(keras.callbacks.Callback):
    """Backs up a `fit` run every `save_freq` steps (or epoch) and resumes it
    exactly, from the step it reached, after a kill at any moment.

    A backup holds the weights, the optimizer state, the random-number state
    of every layer (dropout), the metrics' running totals and the position in
    the epoch; `training_metadata.json`, replaced atomically after the files
    it names are complete, is the commit point, so a kill even during a
    backup leaves the previous one in charge. On multi-worker clusters the
    chief writes and every worker restores. When `fit` starts, the latest
    backup is restored and training continues with the step after it: steps
    already done are passed over without running, and the input pipeline
    continues at the next batch when the training dataset went through
    `resume(dataset)`, which also moves its shuffling and masking seeds on.
    A killed and restarted run then ends with the weights of an
    uninterrupted one, having recomputed at most `save_freq` steps.

    Exact resumption needs a deterministic `tf.data` pipeline (fixed seeds,
    as `pretraining_dataset`) that is either one pass per epoch (finite, no
    `steps_per_epoch`) or `dataset.repeat()` with `steps_per_epoch`. NumPy
    inputs with `shuffle=True` are reshuffled by Keras from its global seed,
    which no backup can replay.

    Args:
        backup_dir: str. Folder for the backups (created when missing); it
            holds nothing else.
        save_freq: "epoch" (default) or an int N: back up every N steps, and
            at the end of every epoch.
        delete_checkpoint: bool, default True. Delete the backups when
            training finishes.

    Example:
        backup = TrainingBackup("runs/bert/backup", save_freq=500)
        model.fit(backup.resume(dataset), epochs=4, callbacks=[backup])
    """

    def __init__(self, backup_dir: str, save_freq="epoch", delete_checkpoint: bool = True):
        super().__init__()
        if save_freq != "epoch" and not (
            isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq > 0
        ):
            raise ValueError(
                f"`save_freq` must be 'epoch' or a positive number of steps; received "
                f"{save_freq!r}."
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self._persistent_iterator = None  # set by `resume`
        self._restored = None
        self._metrics_to_add = None

    @staticmethod
    def latest(backup_dir: str) -> dict | None:
        """The latest backup's record in `backup_dir` ({"epoch", "step",
        "batches", ...}; "epoch" counts completed epochs, "step" the steps done
        in the next one), or None when there is none."""
        path = os.path.join(backup_dir, _METADATA)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                metadata = json.load(f)
            metadata.setdefault("step", 0)
            metadata.setdefault("batches", 0)
            int(metadata["epoch"]), metadata["weights"], metadata["state"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is not a tfbert training backup record ({error}); point "
                "TrainingBackup at a folder of its own, or delete this one to start over."
            ) from None
        return metadata

    @staticmethod
    def completed_epochs(backup_dir: str) -> int:
        """Epochs completed by the latest backup in `backup_dir` (0 when none)."""
        metadata = TrainingBackup.latest(backup_dir)
        return int(metadata["epoch"]) if metadata else 0

    def resume(self, dataset):
        """`dataset` set up to continue where the latest backup stopped; give
        `fit` what this returns. Without a backup it is `dataset` unchanged.

        A finite dataset (one pass per epoch) gets the randomness of the
        completed epochs drawn (`skip_epochs`); its position inside the
        interrupted epoch, like that of a repeated dataset
        (`dataset.repeat()` with `steps_per_epoch`), is restored when `fit`
        starts, by reading past the batches the backup had consumed.
        """
        import tensorflow as tf

        cardinality = int(dataset.cardinality())
        if cardinality == tf.data.UNKNOWN_CARDINALITY:
            raise ValueError(
                "TrainingBackup cannot resume a dataset whose length tf.data does not "
                "know: its epochs end wherever the data runs out. Use "
                "`dataset.repeat()` with `fit(..., steps_per_epoch=N)`, or declare the "
                "length with `dataset.apply(tf.data.experimental.assert_cardinality(n))`."
            )
        self._persistent_iterator = cardinality == tf.data.INFINITE_CARDINALITY
        if not self._persistent_iterator:
            skip_epochs(dataset, self.completed_epochs(self.backup_dir))
        return dataset

    # === Restoring ===

    def on_train_begin(self, logs=None):
        self._step = 0
        self._since_save = 0
        self._batches = 0
        self._epoch = 0
        self._restored = self._restore()

    def _restore(self):
        metadata = self.latest(self.backup_dir)
        if metadata is None:
            return None
        model = self.model
        if not model.built:
            raise ValueError(
                "TrainingBackup found a backup to restore but the model is not built; "
                "build it (call it on one batch) before fit()."
            )
        optimizer = model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        weights = os.path.join(self.backup_dir, metadata["weights"])
        try:
            model.load_weights(weights)
        except ValueError as error:
            raise ValueError(
                f"The backup in {self.backup_dir!r} (epoch {metadata['epoch']}, step "
                f"{metadata['step']}) does not fit this model: {error}. Point "
                "TrainingBackup at a new folder, or delete this one to start over."
            ) from None
        with np.load(os.path.join(self.backup_dir, metadata["state"])) as state:
            generators = _seed_generators(model)
            if state["seed_generators"].shape[0] != len(generators):
                raise ValueError(
                    f"The backup in {self.backup_dir!r} holds "
                    f"{state['seed_generators'].shape[0]} random states, the model has "
                    f"{len(generators)} seed generators: not the same model."
                )
            for generator, value in zip(generators, state["seed_generators"], strict=True):
                generator.state.assign(value)
            self._metric_state = [state[name] for name in sorted(state.files) if "metric" in name]
        epoch, step = int(metadata["epoch"]), int(metadata["step"])
        model._initial_epoch = epoch
        self._batches = int(metadata["batches"])
        if step or (self._persistent_iterator and self._batches):
            if self._persistent_iterator is None:
                warnings.warn(
                    f"TrainingBackup resumes at epoch {epoch + 1}, step {step}, but the "
                    "training dataset did not go through `backup.resume(dataset)`: the "
                    "data is assumed to be one pass per epoch.",
                    stacklevel=2,
                )
            discard = self._batches if self._persistent_iterator else step
            self._skip(step, discard, metadata.get("logs") or {})
        return metadata

    def _skip(self, steps: int, discard: int, logs: dict):
        """Makes the next `fit` steps up to `steps` pass without training and
        the first of them read `discard` batches off the training iterator."""
        model = self.model
        train_function = model.train_function
        per_call = model.steps_per_execution or 1
        remaining = {"steps": steps, "discard": discard}

        def resuming_train_function(iterator):
            for _ in range(remaining["discard"]):
                next(iterator)
            remaining["discard"] = 0
            if remaining["steps"] > 0:
                remaining["steps"] -= per_call
                return logs
            model.train_function = train_function  # back to Keras' own
            outputs = train_function(iterator)
            if self._metrics_to_add is not None:
                self._add_metric_totals()
            return outputs

        model.train_function = resuming_train_function

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._step = 0
        restored = self._restored
        if restored and epoch == int(restored["epoch"]) and int(restored["step"]):
            self._step = int(restored["step"])
            self._restore_metrics()

    def _restore_metrics(self):
        variables = self.model.metrics_variables
        if len(variables) != len(self._metric_state):
            # Keras builds a model's compiled metrics at its first step (no
            # strategy scope): the totals are added to them after that step.
            self._metrics_to_add = self._metric_state
            return
        strategy = self.model.distribute_strategy
        replicas = strategy.num_replicas_in_sync
        for variable, value in zip(variables, self._metric_state, strict=True):
            summed = getattr(variable, "aggregation", None) == "sum"
            share = value / replicas if summed and replicas > 1 else value
            if replicas > 1:
                strategy.run(lambda v=variable, s=share: v.assign(s))
            else:
                variable.assign(share)

    def _add_metric_totals(self):
        """Adds the backed-up running totals to metrics built by the first step
        after the restart: exact for accumulating (sum) variables, the kind
        Keras' metrics keep, since float addition is commutative."""
        variables, totals = self.model.metrics_variables, self._metrics_to_add
        self._metrics_to_add = None
        summed = [getattr(v, "aggregation", None) == "sum" for v in variables]
        if len(variables) != len(totals) or not all(summed):
            warnings.warn(
                "TrainingBackup could not restore the metrics' running totals of the "
                "interrupted epoch; its logs cover the steps after the restart only.",
                stacklevel=2,
            )
            return
        for variable, total in zip(variables, totals, strict=True):
            variable.assign_add(total)

    # === Backing up ===

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        if done <= self._step:  # a step passed over while resuming
            return
        self._since_save += done - self._step
        self._batches += done - self._step
        self._step = done
        if self.save_freq == "epoch" or self._since_save < self.save_freq:
            return
        if self.params.get("steps") == done:
            return  # the epoch's end, just after, backs up this state
        self._save(self._epoch, done, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._save(epoch + 1, 0, logs)

    def _save(self, epoch: int, step: int, logs):
        self._since_save = 0
        record = {
            "epoch": epoch,
            "step": step,
            "batches": self._batches,
            "weights": f"backup-{epoch}-{step}.weights.h5",
            "state": f"backup-{epoch}-{step}.state.npz",
            "logs": _floats(logs),
        }

        def write(scratch):
            folder = scratch or self.backup_dir
            with atomic_path(os.path.join(folder, record["weights"])) as staging:
                self.model.save_weights(staging, overwrite=True)
            state = {
                "seed_generators": np.array(
                    [
                        keras.ops.convert_to_numpy(generator.state.value)
                        for generator in _seed_generators(self.model)
                    ]
                ).reshape((-1, 2)),
            }
            for index, variable in enumerate(self.model.metrics_variables):
                # Metric variables are synchronised on read across replicas:
                # reading aggregates them (with a collective across workers).
                state[f"metric_{index:05d}"] = np.asarray(variable.value.read_value())
            with atomic_path(os.path.join(folder, record["state"])) as staging:
                with open(staging, "wb") as f:
                    np.savez(f, **state)
            with atomic_path(os.path.join(folder, _METADATA)) as staging:  # the commit point
                with open(staging, "w", encoding="utf-8") as f:
                    json.dump(record, f)
            for name in os.listdir(folder):  # older backups, leftovers of a kill
                stale = "backup-" in name or ".staging-" in name
                if stale and name not in (record["weights"], record["state"]):
                    os.remove(os.path.join(folder, name))

        _written_by_chief(self.model, write)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and is_chief(self.model.distribute_strategy):
            shutil.rmtree(self.backup_dir, ignore_errors=True)


def _floats(logs) -> dict:
    """The scalar entries of a logs dict as Python floats (JSON-ready)."""
    values = {}
    for name, value in (logs or {}).items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            continue
    return values


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
    backup_steps: int = 0,
) -> list:
    """The callbacks `tfbert pretrain` trains with, for any Keras `fit`.

    `TrainingMonitor` (learning rate, examples/s, NaN stop), `TrainingBackup`
    in `output_dir/backup` (every `backup_steps` steps and at every epoch's
    end; 0: at epochs' ends only), `AtomicModelCheckpoint` of the whole model
    in `output_dir/checkpoint.keras` after every epoch, and `TensorBoard`
    logs in `output_dir/logs` (written by the chief only).
    """
    callbacks = [TrainingMonitor(global_batch_size)]
    if backup:
        save_freq = backup_steps or "epoch"
        callbacks.append(TrainingBackup(os.path.join(output_dir, "backup"), save_freq))
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
    `2 * epochs`; a repeated (infinite) dataset is read by one iterator for
    the whole of `fit` and skips none. `TrainingBackup.resume` calls this;
    the resume tests in tests/training check it against uninterrupted runs,
    so a Keras upgrade that changes it fails there.
    """
    import tensorflow as tf

    if int(dataset.cardinality()) == tf.data.INFINITE_CARDINALITY:
        return dataset
    for _ in range(2 * epochs):
        iter(dataset)
    return dataset
