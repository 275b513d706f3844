"""Label-smoothed token cross-entropy that skips padding (Vaswani et al., 2017, 5.4)."""

import keras
from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution

from tfbert.models.distributed_trainer import sum_over_replicas


def token_weights(y_true, ignore_token_id: int, sample_weight=None):
    """(B, T) float32 weights: 0 where the label is `ignore_token_id`, else the sample weight."""
    weights = ops.cast(ops.not_equal(y_true, ignore_token_id), "float32")
    if sample_weight is None:
        return weights
    sample_weight = ops.cast(sample_weight, "float32")
    if len(sample_weight.shape) == 1:  # one weight per sequence
        sample_weight = ops.expand_dims(sample_weight, -1)
    return weights * sample_weight


@keras.saving.register_keras_serializable(package="tfbert")
class LabelSmoothedCrossEntropy(keras.losses.Loss):
    """Cross-entropy against (1 - e) * one-hot + e / V, averaged over real tokens.

    Labels equal to `ignore_token_id` (padding) add nothing to the loss or to
    the token count it is averaged over. Under `tf.distribute` the average is
    over the tokens of all replicas, so the gradient equals one device's on
    the global batch even when replicas hold different numbers of tokens.

    Args:
        label_smoothing: float, default 0.1 (the paper's e).
        ignore_token_id: int, default 0. The padding label.

    Example:
        model.compile(optimizer="adam", loss=LabelSmoothedCrossEntropy(0.1))
        # y: (batch, length) int target ids, 0 after each sequence's end
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        ignore_token_id: int = 0,
        name: str = "label_smoothed_cross_entropy",
        **kwargs,
    ):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1); received label_smoothing={label_smoothing}."
            )
        reduction = kwargs.pop("reduction", "sum_over_batch_size")
        if reduction != "sum_over_batch_size":
            raise ValueError(
                "LabelSmoothedCrossEntropy always averages over the real (non-padding) "
                f"tokens; reduction={reduction!r} is not supported. Use `call(y_true, "
                "y_pred)` for the per-token losses."
            )
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.ignore_token_id = ignore_token_id

    def call(self, y_true, y_pred):
        """Per-token losses (B, T) from int labels (B, T) and logits (B, T, V)."""
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        labels = ops.expand_dims(ops.cast(y_true, "int32"), -1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, labels, axis=-1), -1)
        if not self.label_smoothing:
            return nll
        uniform = -ops.mean(log_probs, axis=-1)
        return (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform

    def __call__(self, y_true, y_pred, sample_weight=None):
        weights = token_weights(y_true, self.ignore_token_id, sample_weight)
        tokens, replicas = sum_over_replicas(ops.sum(weights))
        total = ops.sum(self.call(y_true, y_pred) * weights)
        return scale_loss_for_distribution(ops.divide_no_nan(total * replicas, tokens))

    def get_config(self):
        return {
            "name": self.name,
            "label_smoothing": self.label_smoothing,
            "ignore_token_id": self.ignore_token_id,
        }
