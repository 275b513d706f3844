"""Masked-language-model head: predicts the original token at masked positions."""

import keras
from keras import ops

from tfbert.layers.utils import clone_initializer, gather_positions, get_activation


@keras.saving.register_keras_serializable(package="tfbert")
class MaskedLMHead(keras.layers.Layer):
    """Gather masked positions, Dense + activation + LayerNorm, project to vocabulary.

    Only the (B, P) masked positions are transformed and projected, never the
    whole (B, T) sequence. With `token_embedding` the output projection is the
    transposed embedding matrix (weights tied, as in BERT) plus a bias.
    Logits are returned in float32 whatever the compute dtype.

    Args:
        vocabulary_size: int, default None. Required without `token_embedding`.
        token_embedding: `keras.layers.ReversibleEmbedding`, default None.
            Tie to it: its `reverse=True` call is the output projection.
        activation: str or callable, default "gelu".
        layer_norm_epsilon: float, default 1e-12.
        kernel_initializer: default TruncatedNormal(stddev=0.02).
        bias_initializer: default "zeros".

    Example:
        head = MaskedLMHead(vocabulary_size=30522)
        sequence = np.random.rand(2, 16, 128).astype("float32")
        logits = head(sequence, mask_positions=np.array([[1, 5], [2, 3]]))
    """

    def __init__(
        self,
        vocabulary_size: int | None = None,
        token_embedding=None,
        activation="gelu",
        layer_norm_epsilon: float = 1e-12,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if token_embedding is not None:
            if not isinstance(token_embedding, keras.layers.ReversibleEmbedding):
                raise ValueError(
                    "`token_embedding` must be a keras.layers.ReversibleEmbedding "
                    f"(tie_weights=True); received {type(token_embedding).__name__}."
                )
            if vocabulary_size not in (None, token_embedding.input_dim):
                raise ValueError(
                    f"`vocabulary_size`={vocabulary_size} does not match the tied "
                    f"`token_embedding`, which has input_dim="
                    f"{token_embedding.input_dim}."
                )
            vocabulary_size = token_embedding.input_dim
        if not isinstance(vocabulary_size, int) or vocabulary_size < 1:
            raise ValueError(
                "MaskedLMHead needs a positive integer `vocabulary_size` or a "
                f"`token_embedding` to tie to; received vocabulary_size="
                f"{vocabulary_size!r}."
            )
        get_activation(activation)
        self.vocabulary_size = vocabulary_size
        self.token_embedding = token_embedding
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, inputs_shape, mask_positions_shape=None):
        hidden_dim = inputs_shape[-1]
        if self.token_embedding is not None and not self.token_embedding.built:
            self.token_embedding.build((None, None))
        if self.token_embedding is not None and (self.token_embedding.output_dim != hidden_dim):
            raise ValueError(
                f"The tied `token_embedding` has output_dim="
                f"{self.token_embedding.output_dim}, but the inputs have "
                f"{hidden_dim} features; they must match."
            )
        self.dense = keras.layers.Dense(
            hidden_dim,
            activation=get_activation(self.activation),
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="transform",
        )
        self.dense.build(inputs_shape)
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.layer_norm.build(inputs_shape)
        if self.token_embedding is None:
            self.decoder_kernel = self.add_weight(
                name="decoder_kernel",
                shape=(hidden_dim, self.vocabulary_size),
                initializer=clone_initializer(self.kernel_initializer),
            )
        self.output_bias = self.add_weight(
            name="output_bias",
            shape=(self.vocabulary_size,),
            initializer=clone_initializer(self.bias_initializer),
        )
        self.built = True

    def call(self, inputs, mask_positions=None):
        """Returns float32 logits (B, P, V).

        Args:
            inputs: (B, T, D) sequence output of the encoder, or (B, P, D)
                hidden states already gathered at the masked positions.
            mask_positions: (B, P) int positions to predict, or None when
                `inputs` are already gathered.
        """
        x = inputs
        if mask_positions is not None:
            (x,) = gather_positions([inputs], mask_positions, "mask_positions")  # (B, P, D)
        x = self.layer_norm(self.dense(x))
        if self.token_embedding is None:
            kernel = ops.cast(self.decoder_kernel, self.compute_dtype)  # (D, V)
            logits = ops.matmul(x, kernel)
        else:
            logits = self.token_embedding(x, reverse=True)  # (B, P, V)
        return ops.cast(logits, "float32") + ops.cast(self.output_bias, "float32")

    def compute_output_spec(self, inputs, mask_positions=None):
        shape = inputs.shape[:-1] if mask_positions is None else mask_positions.shape
        return keras.KerasTensor(tuple(shape) + (self.vocabulary_size,), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "token_embedding": keras.layers.serialize(self.token_embedding)
                if self.token_embedding is not None
                else None,
                "activation": self.activation
                if isinstance(self.activation, str)
                else keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("token_embedding") is not None:
            config["token_embedding"] = keras.layers.deserialize(config["token_embedding"])
        return cls(**config)
