"""Learned absolute position embeddings."""

import keras
from keras import ops

from tfbert.layers.utils import clone_initializer


def check_sequence_length(length, max_length, name="max_sequence_length"):
    """Raises when a statically known sequence length exceeds the model's limit."""
    if isinstance(length, int) and length > max_length:
        raise ValueError(
            f"Input sequence length {length} exceeds {name}={max_length}. "
            f"Truncate inputs to at most {max_length} tokens or build the model "
            f"with a larger {name}."
        )


@keras.saving.register_keras_serializable(package="tfbert")
class PositionEmbedding(keras.layers.Layer):
    """A trainable vector per position, added by the caller to token embeddings.

    Args:
        sequence_length: int. Maximum number of positions.
        initializer: initializer, default "glorot_uniform".

    Example:
        positions = PositionEmbedding(sequence_length=512)
        x = np.zeros((2, 16, 64), "float32")
        y = x + positions(x)  # (2, 16, 64)
    """

    def __init__(self, sequence_length: int, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(sequence_length, int) or sequence_length < 1:
            raise ValueError(
                "`sequence_length` must be a positive integer; received "
                f"sequence_length={sequence_length!r}."
            )
        self.sequence_length = sequence_length
        self.initializer = keras.initializers.get(initializer)

    def build(self, inputs_shape):
        self.position_embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, inputs_shape[-1]),
            initializer=clone_initializer(self.initializer),
        )
        self.built = True

    def call(self, inputs, start_index=0):
        """Returns position vectors shaped like `inputs` (B, T, D).

        `start_index` offsets the positions, for decoding one step at a time.
        """
        check_sequence_length(inputs.shape[-2], self.sequence_length)
        length = ops.shape(inputs)[-2]
        # (T, D)
        embeddings = ops.slice(
            ops.convert_to_tensor(self.position_embeddings),
            (start_index, 0),
            (length, ops.shape(self.position_embeddings)[-1]),
        )
        return ops.broadcast_to(ops.cast(embeddings, self.compute_dtype), ops.shape(inputs))

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
