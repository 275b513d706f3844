"""`fit`, `evaluate` and `predict` of tfbert models on several workers.

Keras 3.15's TensorFlow trainer fails under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585) in two places. `DistributedTrainer`, a base class of
every tfbert model, overrides the two methods involved, on tfbert's classes
only and only while the model's strategy spans several workers; on one
machine Keras' own code runs (see the third change below for the one
thing done earlier there). Nothing of Keras is replaced: a plain Keras
model in the same program trains exactly as without tfbert.

1. Before the first step, `_maybe_symbolic_build` averages the first input
   batch across replicas (`strategy.reduce("MEAN", batch)`) just to learn its
   shapes; across workers that reduction cannot take the `PerReplica` batch
   (`ValueError: Attempt to convert a value (PerReplica...`). One local
   replica's batch has the same shapes and needs no communication.
2. After every step, Keras averages the replicas' logs with
   `strategy.reduce("MEAN", value, axis=0)`, a reduction *along* axis 0,
   which fails on the scalar loss and metrics. Here each replica returns its
   logs with a leading axis of length one, so that very reduction becomes
   the element-wise mean across replicas that one machine computes.

A third change only saves time, for a model made outside any strategy
scope: `_build_before_tracing` builds the optimizer and compiled metrics
before the first training step is traced, so that its graph is built once,
not twice.

The optimizer half (clipping the summed gradient, accumulating gradients
across replicas) is `tfbert.training.DistributedOptimizer`. Both lean on
Keras internals of the versions tfbert is tested with: `check_keras_version`
refuses any other at the point of use, before a wrong result can happen.
"""

import warnings

import keras
from keras import ops, tree

# Keras versions whose trainer and optimizer internals the fixes were tested
# against (tests/training/test_distributed_training.py pins them).
TESTED_KERAS = ((3, 15), (3, 16))


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def check_keras_version(feature: str, version: str | None = None) -> None:
    """Raises RuntimeError when Keras is outside `TESTED_KERAS`.

    Called where `feature` (a multi-replica fix) is about to rely on Keras
    internals, never at import: one-device training works with any Keras.
    """
    version = version or keras.__version__
    low, high = TESTED_KERAS
    if not low <= _version(version) < high:
        raise RuntimeError(
            f"{feature} relies on Keras internals that tfbert was tested with on Keras "
            f"{low[0]}.{low[1]}.x; this process runs Keras {version}. Install the tested "
            f"version (pip install 'keras>={low[0]}.{low[1]},<{high[0]}.{high[1]}'), or "
            "train on one device, where these fixes do not run."
        )


def spans_workers(strategy) -> bool:
    """True when `strategy` is a MultiWorkerMirroredStrategy over several workers."""
    import tensorflow as tf  # tf.distribute is TensorFlow-only

    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def _first_local_replica(strategy, batch):
    import tensorflow as tf  # tf.distribute is TensorFlow-only

    def first(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tree.map_structure(first, batch)


# Where `_maybe_symbolic_build` leaves the data's shapes for `make_train_function`.
_FIRST_TRACE_SHAPES = "_tfbert_first_trace_shapes"


def _dense_shapes(iterator=None, data_batch=None):
    """What the first training step will be given: `train_on_batch`'s batch,
    or the element spec of `fit`'s dataset (no batch is read); None when
    any part is not a dense tensor (ragged, sparse, Python lists)."""
    import numpy as np
    import tensorflow as tf  # element specs are tf.data's

    if data_batch is None:
        dataset = getattr(iterator, "_distributed_dataset", None)
        data_batch = getattr(dataset, "element_spec", None)
    dense = (tf.TensorSpec, tf.Tensor, np.ndarray, type(None))
    if data_batch is None or not all(isinstance(v, dense) for v in tree.flatten(data_batch)):
        return None
    return data_batch


def _build_before_tracing(model, shapes) -> None:
    """Builds the optimizer and the compiled losses and metrics of a built
    model from `shapes` before its first training step is traced.

    Outside a strategy scope Keras 3.15 leaves that to the trace of the
    first step, and a `tf.function` whose first trace creates variables is
    traced a second time: every first `fit` or `train_on_batch` on one
    device built its step graph twice. Keras builds the same way, from a
    batch, under a strategy. Where Keras cannot build symbolically, the
    trace builds as before and reports any real error.
    """
    if shapes is None:
        return
    try:
        if all(layer.built for layer in model._flatten_layers()):
            model._symbolic_build(data_batch=shapes)
    except Exception:  # noqa: BLE001 - the trace builds it, and reports a real error
        pass


class MultiWorkerTraining:
    """The trainer changes of this module's docstring, as a mixin.

    `DistributedTrainer` (every tfbert model) and
    `tfbert.compression.BertDistiller` (a `keras.distillation.Distiller`,
    not functional) put it before their Keras base class. It is a plain
    class, not a `keras.Model`: Keras rewrites the bases of functional
    models' classes, which a Model subclass in between would break.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None:
            # Kept for `make_train_function`: `evaluate` builds no optimizer.
            self.__dict__[_FIRST_TRACE_SHAPES] = _dense_shapes(iterator, data_batch)
        if strategy is None or iterator is None or not spans_workers(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        check_keras_version(f"Multi-worker fit ({type(self).__name__})")
        for _, _, distributed_iterator in iterator:
            data_batch = _first_local_replica(strategy, next(distributed_iterator))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def make_train_function(self, force=False):
        shapes = self.__dict__.pop(_FIRST_TRACE_SHAPES, None)
        if self.train_function is None or force:
            _build_before_tracing(self, shapes)
        # A LossScaleOptimizer (mixed float16) applies its inner optimizer's update.
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        replicas = self.distribute_strategy.num_replicas_in_sync
        needs_sum = optimizer is not None and (
            optimizer.global_clipnorm
            or optimizer.clipnorm
            or optimizer.clipvalue
            or optimizer.gradient_accumulation_steps
        )
        if replicas > 1 and needs_sum and not getattr(optimizer, "sums_over_replicas", False):
            warnings.warn(
                f"{type(optimizer).__name__} clips or accumulates each of the "
                f"{replicas} replicas' gradients separately (Keras' behaviour), so "
                "training differs from one device: use tfbert.training.create_adamw / "
                "AdamW / Lamb / SGD, or derive the optimizer from "
                "tfbert.training.DistributedOptimizer.",
                stacklevel=2,
            )
        return super().make_train_function(force)

    def make_test_function(self, force=False):
        self.__dict__.pop(_FIRST_TRACE_SHAPES, None)
        return super().make_test_function(force)

    def _make_function(self, step_function):
        if not spans_workers(self.distribute_strategy):
            return super()._make_function(step_function)
        check_keras_version(f"Multi-worker fit ({type(self).__name__})")

        def step_with_leading_axis(data):
            # (…) -> (1, …): Keras' MEAN along axis 0 is then the replica mean.
            return tree.map_structure(lambda value: ops.expand_dims(value, 0), step_function(data))

        return super()._make_function(step_with_leading_axis)


class DistributedTrainer(MultiWorkerTraining, keras.Model):
    """A `keras.Model` whose `fit`, `evaluate` and `predict` also work under
    `MultiWorkerMirroredStrategy` (see this module's docstring).

    Every tfbert model derives from it. A functional model of your own gets
    the same by deriving from it in place of `keras.Model`:

    Example:
        class Regressor(DistributedTrainer):
            def __init__(self, backbone, **kwargs):
                inputs = ...
                super().__init__(inputs=inputs, outputs=head(backbone(inputs)), **kwargs)
    """

    def __init__(self, *args, pruning: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Magnitude pruning's state (`tfbert.compression.prune_low_magnitude`):
        # which kernels carry masks, and the schedule. It is part of the saved
        # config, so a pruning-wrapped model loads with its masks and resumes.
        self.pruning = None
        if pruning:
            from tfbert.layers.kernel_mask import mask_kernels

            mask_kernels(self, pruning["layers"], pruning["params"])
            self.pruning = pruning

    def compile_from_config(self, config):
        """Restores compile() (optimizer state included) when a saved model loads.

        Keras skips this for models with their own `compile` (every tfbert task
        model has one, for its default loss and metrics).
        """
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def pruning_config(self) -> dict:
        """`{"pruning": ...}` for `get_config` while the model is pruning-wrapped, else `{}`."""
        return {"pruning": self.pruning} if self.pruning else {}


def sum_over_replicas(value):
    """`value` summed over the replicas training in sync, and their count.

    Losses normalised by a count that varies per replica (masked-LM
    predictions, labelled tokens) divide by the global count so that the
    replicas' gradients add up to the gradient of the global mean, as on one
    device. Outside a replica context (one device, symbolic builds) this is
    `(value, 1)`.
    """
    import tensorflow as tf  # replica contexts are tf.distribute, TensorFlow-only

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value, 1
    return context.all_reduce("SUM", value), context.num_replicas_in_sync
