"""`Dense` whose kernel is multiplied by a non-trainable mask (magnitude pruning)."""

import keras

from tfbert.layers.kernel_mask import MASKED_CLASSES, KernelMask


@keras.saving.register_keras_serializable(package="tfbert")
class MaskedDense(KernelMask, keras.layers.Dense):
    """A `keras.layers.Dense` that computes with `kernel * kernel_mask`.

    Same arguments and config as `Dense`. `kernel_mask` (same shape as the
    kernel, float 0/1, all ones when built) is a non-trainable weight, saved
    with the layer; `tfbert.compression.prune_low_magnitude` sets it.

    Example:
        layer = MaskedDense(8)
        layer.build((None, 4))
        layer.kernel_mask.assign(np.eye(4, 8, dtype="float32"))
    """


MASKED_CLASSES[keras.layers.Dense] = MaskedDense
