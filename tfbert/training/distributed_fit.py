"""Keras optimizers that train under several replicas as they do on one device.

Keras 3.15's optimizers go wrong under every multi-replica strategy in two
ways; `DistributedOptimizer`, a base of tfbert's `AdamW`, `Lamb` and `SGD`
(what `create_adamw`, `create_lamb` and `pretrain` build), overrides the two
methods involved, on tfbert's classes only and only with several replicas in
sync; on one replica Keras' own code runs unchanged and nothing of Keras is
replaced (a plain Keras optimizer in the same program is untouched):

1. Clipping (`global_clipnorm`, `clipnorm`, `clipvalue`) happens before the
   replicas' gradients are summed, so each replica clips its own share: with
   R replicas a global norm of 1.0 acts like R. Here the replicas first sum
   their gradients, clip the sum, and hand each replica 1/R of it to Keras'
   own sum, which restores the clipped total.
2. Gradient accumulation (`gradient_accumulation_steps`) fails: Keras updates
   the variables or the accumulators inside a conditional, where replicas
   cannot synchronise ("`merge_call` called while defining a new graph").
   Here the replicas sum their gradients first, in replica context, and the
   conditional runs in cross-replica context on the summed values.

The trainer half (multi-worker `fit`) is `tfbert.models.DistributedTrainer`.
Both lean on Keras internals of the tested versions, which
`check_keras_version` enforces where they are used.
"""

import tensorflow as tf

from tfbert.models.distributed_trainer import check_keras_version


def _replicas():
    """(replica context, replicas in sync); (None, 1) outside `strategy.run`."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return context, 1
    return context, context.num_replicas_in_sync


class DistributedOptimizer:
    """Mixin for a Keras optimizer: clipping acts on the gradient summed over
    replicas, and gradient accumulation works under several replicas (see
    this module's docstring). Put it first among the bases.

    Example:
        class Adam(DistributedOptimizer, keras.optimizers.Adam):
            pass
    """

    # Read by tfbert's models, which warn about optimizers without it.
    sums_over_replicas = True

    def _clip_gradients(self, grads):
        context, replicas = _replicas()
        if replicas == 1 or not (self.global_clipnorm or self.clipnorm or self.clipvalue):
            return super()._clip_gradients(grads)
        check_keras_version("Clipping across replicas (DistributedOptimizer)")
        present = [g for g in grads if g is not None]
        total = iter(context.all_reduce("SUM", present))
        summed = [None if g is None else next(total) for g in grads]
        share = 1.0 / replicas
        return [None if g is None else g * share for g in super()._clip_gradients(summed)]

    def _backend_apply_gradients(self, grads, trainable_variables):
        context, replicas = _replicas()
        if replicas == 1 or not self.gradient_accumulation_steps or self.use_ema:
            return super()._backend_apply_gradients(grads, trainable_variables)
        check_keras_version("Gradient accumulation across replicas (DistributedOptimizer)")
        steps = self.gradient_accumulation_steps
        accumulators = [
            self._accumulated_gradients[self._get_variable_index(v)] for v in trainable_variables
        ]
        # Global sums, identical on every replica; then the update's average,
        # clipped as a whole (Keras' clipping on the already summed values).
        summed = context.all_reduce("SUM", list(grads))
        averaged = [(g + a.value) / steps for g, a in zip(summed, accumulators, strict=True)]
        averaged = super()._clip_gradients(averaged)
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
