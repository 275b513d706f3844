"""`EinsumDense` whose kernel is multiplied by a non-trainable mask (magnitude pruning)."""

import keras

from tfbert.layers.kernel_mask import MASKED_CLASSES, KernelMask


@keras.saving.register_keras_serializable(package="tfbert")
class MaskedEinsumDense(KernelMask, keras.layers.EinsumDense):
    """A `keras.layers.EinsumDense` that computes with `kernel * kernel_mask`.

    Same arguments and config as `EinsumDense`; the attention projections of
    `tfbert.layers.MultiHeadAttention` are EinsumDense layers. See `MaskedDense`.

    Example:
        layer = MaskedEinsumDense("btd,dnh->btnh", output_shape=(None, 2, 4))
        layer.build((None, None, 8))
        layer.kernel_mask.assign(np.zeros((8, 2, 4), "float32"))  # all pruned
    """


MASKED_CLASSES[keras.layers.EinsumDense] = MaskedEinsumDense
