"""Keras 3's `fit` under `tf.distribute`, made to work and to train as one device does.

Keras 3.15's TensorFlow trainer fails under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585) in two places (1, 2), and its optimizers go wrong
under every multi-replica strategy (3, 4); `enable_distributed_fit` fixes all
four (the tests in tests/training/test_distributed_training.py compare each
against one device):

1. Before the first step, `_maybe_symbolic_build` averages the first input
   batch across replicas with `strategy.reduce("MEAN", ...)` just to learn
   its shapes; with several workers that reduction cannot take the
   `PerReplica` batch (`ValueError: Attempt to convert a value (PerReplica...`).
   One local replica's batch has the same shapes and needs no communication.
2. After every step, `reduce_per_replica` averages each replica's logs with
   `strategy.reduce("MEAN", value, axis=0)`: a reduction *along* axis 0,
   which fails on the scalar loss and metrics (rank error) and is the wrong
   operation anyway. The element-wise mean across replicas (`axis=None`) is
   what the single-machine path computes.
3. Gradient accumulation (`gradient_accumulation_steps`) fails under
   MirroredStrategy: Keras sums the replicas' gradients and updates the
   variables inside a conditional (update or accumulate), where replicas
   cannot synchronise ("`merge_call` called while defining a new graph").
   Here the replicas sum their gradients first, in replica context, and the
   conditional runs in cross-replica context on the summed values.
4. Optimizers clip gradients (`global_clipnorm`, `clipnorm`, `clipvalue`)
   before the replicas' gradients are summed, so each replica clips its own
   share: with R replicas a global norm of 1.0 acts like R. Here the
   replicas first sum their gradients, clip the sum, and hand each replica
   1/R of it to Keras' own sum, which restores the clipped total.

Epoch logs are read from the metrics' variables, which Keras creates
synchronized on read with sum aggregation, so they are global averages over
all workers' examples. The patch is idempotent, changes nothing on one
device, and is applied when `tfbert.training` is imported.
"""

import functools

import tensorflow as tf
from keras import tree
from keras.src.backend.tensorflow import optimizer as tf_optimizer
from keras.src.backend.tensorflow import trainer as tf_trainer

_PATCHED = "_tfbert_distributed_fit"


def _local_batch(strategy, batch):
    def first_local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tree.map_structure(first_local, batch)


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    strategy = self._distribute_strategy
    if strategy is None:
        return
    if iterator is not None:
        for _, _, distributed_iterator in iterator:
            data_batch = _local_batch(strategy, next(distributed_iterator))
            break
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _fixed_reduce_per_replica(original):
    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    setattr(reduce_per_replica, _PATCHED, True)
    return reduce_per_replica


def _replica_count():
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return context, 1
    return context, context.num_replicas_in_sync


def _clip_after_sum(original):
    @functools.wraps(original)
    def _clip_gradients(self, grads):
        context, replicas = _replica_count()
        if not (self.global_clipnorm or self.clipnorm or self.clipvalue) or replicas == 1:
            return original(self, grads)
        present = [g for g in grads if g is not None]
        total = iter(context.all_reduce("SUM", present))
        summed = [None if g is None else next(total) for g in grads]
        share = 1.0 / replicas
        return [None if g is None else g * share for g in original(self, summed)]

    return _clip_gradients


def _accumulate_across_replicas(original, original_clip):
    @functools.wraps(original)
    def _backend_apply_gradients(self, grads, trainable_variables):
        context, replicas = _replica_count()
        if not self.gradient_accumulation_steps or replicas == 1 or self.use_ema:
            return original(self, grads, trainable_variables)
        steps = self.gradient_accumulation_steps
        accumulators = [
            self._accumulated_gradients[self._get_variable_index(v)] for v in trainable_variables
        ]
        # Global sums, identical on every replica; then the update's average.
        summed = context.all_reduce("SUM", list(grads))
        averaged = [(g + a.value) / steps for g, a in zip(summed, accumulators, strict=True)]
        averaged = original_clip(self, averaged)
        variables = [v.value if hasattr(v, "value") else v for v in trainable_variables]

        def cross_replica(distribution, summed, averaged):
            def update():
                learning_rate = self.learning_rate
                for variable, gradient, source in zip(
                    variables, averaged, trainable_variables, strict=True
                ):
                    if self.weight_decay is not None and self._use_weight_decay(source):
                        decay = learning_rate * self.weight_decay

                        def decay_fn(v, decay=decay):
                            v.assign_sub(v * tf.cast(decay, v.dtype))

                        distribution.extended.update(variable, decay_fn, group=False)
                    distribution.extended.update(
                        variable,
                        lambda v, g: self.update_step(g, v, learning_rate),
                        args=(gradient,),
                        group=False,
                    )
                for accumulator in accumulators:
                    accumulator.assign(tf.zeros_like(accumulator.value))

            def accumulate():
                for accumulator, gradient in zip(accumulators, summed, strict=True):
                    distribution.extended.update(
                        accumulator.value,
                        lambda v, g: v.assign_add(g),
                        args=(gradient,),
                        group=False,
                    )

            tf.cond((self._iterations + 1) % steps == 0, update, accumulate)

        context.merge_call(cross_replica, args=(summed, averaged))

    return _backend_apply_gradients


def enable_distributed_fit() -> None:
    """Makes Keras `fit`/`evaluate`/`predict` work under MultiWorkerMirroredStrategy
    and gradient clipping act on the global gradient under every strategy."""
    if getattr(tf_trainer.reduce_per_replica, _PATCHED, False):
        return
    tf_trainer.reduce_per_replica = _fixed_reduce_per_replica(tf_trainer.reduce_per_replica)
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    clip = tf_optimizer.TFOptimizer._clip_gradients
    tf_optimizer.TFOptimizer._clip_gradients = _clip_after_sum(clip)
    tf_optimizer.TFOptimizer._backend_apply_gradients = _accumulate_across_replicas(
        tf_optimizer.TFOptimizer._backend_apply_gradients, clip
    )


def is_chief(strategy=None) -> bool:
    """True on the worker that writes checkpoints and logs: the chief, or
    worker 0 when the cluster has no chief; always True on one machine."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(strategy.extended, "_in_multi_worker_mode", bool)():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and task_type == "worker" and task_id == 0
