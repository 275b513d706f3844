"""Fixed sinusoidal position encodings (Vaswani et al., 2017, section 3.5)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfbert")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """PE(p, 2i) = sin(p / w^(2i/D)), PE(p, 2i+1) = cos(p / w^(2i/D)); no weights.

    Args:
        max_wavelength: float, default 10000. The w above.

    Example:
        encoding = SinusoidalPositionEncoding()
        x = np.zeros((2, 16, 64), "float32")
        y = x + encoding(x)  # (2, 16, 64)
    """

    def __init__(self, max_wavelength: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        if max_wavelength <= 0:
            raise ValueError(f"`max_wavelength` must be positive; received {max_wavelength}.")
        self.max_wavelength = max_wavelength

    def call(self, inputs, start_index=0):
        """Returns encodings shaped like `inputs` (B, T, D), positions from `start_index`."""
        hidden_dim = inputs.shape[-1]
        if hidden_dim is None or hidden_dim % 2:
            raise ValueError(
                "SinusoidalPositionEncoding needs an even, known feature size; "
                f"received inputs of shape {tuple(inputs.shape)}."
            )
        length = ops.shape(inputs)[-2]
        positions = ops.cast(ops.arange(length) + start_index, "float32")  # (T,)
        # (D/2,) inverse wavelengths
        frequencies = ops.power(
            float(self.max_wavelength),
            -ops.arange(0, hidden_dim, 2, dtype="float32") / hidden_dim,
        )
        angles = ops.expand_dims(positions, 1) * ops.expand_dims(frequencies, 0)
        # Interleave: even features get sin, odd features get cos. (T, D)
        encoding = ops.reshape(
            ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (length, hidden_dim)
        )
        return ops.broadcast_to(ops.cast(encoding, self.compute_dtype), ops.shape(inputs))

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config["max_wavelength"] = self.max_wavelength
        return config
