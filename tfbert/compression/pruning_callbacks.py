"""Callbacks that drive magnitude pruning inside `fit`."""

import os

import keras
import numpy as np

from tfbert.compression.magnitude_pruning import masked_layers, sparsity_of, update_mask
from tfbert.compression.pruning_schedule import get_schedule


class UpdatePruningStep(keras.callbacks.Callback):
    """Recomputes the masks of a pruning-wrapped model as its schedule says.

    Required when training a model from `prune_low_magnitude` with `fit`.
    The step is the optimizer's iteration count, so a model loaded from
    `.keras` (optimizer state included) resumes its schedule where it
    stopped. Before each batch whose step the schedule marks (checking
    every step since the last batch, for `steps_per_execution` > 1), each
    masked kernel keeps its largest-magnitude weights at the scheduled
    sparsity; the pruned weights are set to zero in the kernel variable too.

    Example:
        pruned.fit(x, y, epochs=2, callbacks=[UpdatePruningStep()])
    """

    def on_train_begin(self, logs=None):
        self._layers = masked_layers(self.model)
        if not self._layers:
            raise ValueError(
                "UpdatePruningStep found no pruning-wrapped layer in the model; make it "
                "with tfbert.compression.prune_low_magnitude."
            )
        self._schedules = {
            path: get_schedule(layer.pruning["schedule"]) for path, layer in self._layers.items()
        }
        self._last_step = int(self.model.optimizer.iterations.numpy()) - 1

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        for path, layer in self._layers.items():
            schedule = self._schedules[path]
            due = [s for s in range(self._last_step + 1, step + 1) if schedule.should_prune(s)]
            if due:
                update_mask(layer, schedule.sparsity(due[-1]))
        self._last_step = step

    def on_epoch_end(self, epoch, logs=None):
        # Keep the stored pruned weights at zero (an optimizer's momentum may
        # have moved them; the forward pass never reads them).
        for layer in self._layers.values():
            layer._kernel.assign(layer._kernel * layer.kernel_mask)


class PruningSummaries(keras.callbacks.Callback):
    """Writes each pruned kernel's sparsity to TensorBoard at the end of every epoch.

    Scalars `pruning/<layer path>/sparsity` and `pruning/sparsity` (all
    pruned kernels together), at the optimizer's step.

    Args:
        log_dir: str. TensorBoard log folder (a `train` subfolder holds the events).

    Example:
        pruned.fit(x, y, callbacks=[UpdatePruningStep(), PruningSummaries("logs")])
    """

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf  # summaries are TensorFlow's

        self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "train"))

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        step = int(self.model.optimizer.iterations.numpy())
        layers = masked_layers(self.model)
        zeros = total = 0
        with self._writer.as_default(step=step):
            for path, layer in layers.items():
                fraction = sparsity_of(layer)
                tf.summary.scalar(f"pruning/{path}/sparsity", fraction)
                size = int(np.prod(layer.kernel_mask.shape))
                zeros += fraction * size
                total += size
            if total:
                tf.summary.scalar("pruning/sparsity", zeros / total)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
