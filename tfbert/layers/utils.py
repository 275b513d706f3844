"""Small helpers shared by tfbert layers."""

import keras
from keras import ops


def clone_initializer(initializer):
    """A fresh copy, so sublayers sharing one setting do not share one RNG stream."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


@keras.saving.register_keras_serializable(package="tfbert")
def gelu_approximate(x):
    """GELU with the tanh approximation (Hendrycks & Gimpel), as in original BERT code."""
    return keras.activations.gelu(x, approximate=True)


_ACTIVATIONS = {
    # Hugging Face `hidden_act` names. "gelu" there, as in Keras, is exact (erf).
    "gelu_new": gelu_approximate,
    "gelu_pytorch_tanh": gelu_approximate,
    "gelu_approximate": gelu_approximate,
}


def get_activation(activation):
    """Resolves an activation name (Keras or Hugging Face spelling) or callable."""
    if isinstance(activation, str) and activation in _ACTIVATIONS:
        return _ACTIVATIONS[activation]
    try:
        return keras.activations.get(activation)
    except ValueError as error:
        raise ValueError(
            f"Unknown `activation`={activation!r}. Use a Keras activation name "
            f"(e.g. 'gelu', 'relu'), one of {sorted(_ACTIVATIONS)}, or a callable."
        ) from error


def check_hidden_dim(hidden_dim, num_heads):
    """Raises when `hidden_dim` cannot be split evenly into `num_heads` heads."""
    if hidden_dim is None or num_heads < 1 or hidden_dim % num_heads:
        raise ValueError(
            f"`hidden_dim` must be divisible by `num_heads`; received "
            f"hidden_dim={hidden_dim}, num_heads={num_heads}."
        )
    return hidden_dim // num_heads


def gather_positions(sequences, positions, name: str = "positions"):
    """Rows of each sequence at the given positions: a list of (B, T, ...) tensors
    and (B, K) int positions give a list of (B, K, ...) tensors.
    """
    if len(positions.shape) != 2:
        raise ValueError(
            f"`{name}` must have shape (batch, num_positions); received shape "
            f"{tuple(positions.shape)}."
        )
    index = ops.expand_dims(ops.cast(positions, "int32"), -1)  # (B, K, 1)
    return [ops.take_along_axis(sequence, index, axis=1) for sequence in sequences]
