"""What Transformer encoder and decoder blocks share: config, FFN, residual wiring."""

import keras

from tfbert.layers.multi_head_attention import MultiHeadAttention
from tfbert.layers.utils import check_hidden_dim, clone_initializer, get_activation


class TransformerBlock(keras.layers.Layer):
    """Base of `TransformerEncoderBlock` and `TransformerDecoderBlock`.

    Each sublayer f (attention, feed-forward) is wrapped as
    post-LN: x = LayerNorm(x + Dropout(f(x)))  (BERT, Vaswani et al.), or
    pre-LN:  x = x + Dropout(f(LayerNorm(x)))  (`normalize_first=True`).
    The feed-forward network is Dense(intermediate_dim, activation) ->
    Dense(hidden_dim), plain `Dense` layers that pruning and quantization find.
    Attention has `num_heads` heads of `key_dim` (default hidden_dim //
    num_heads); structured pruning leaves num_heads * key_dim < hidden_dim.
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        dropout: float = 0.0,
        attention_dropout: float | None = None,
        activation="gelu",
        layer_norm_epsilon: float = 1e-5,
        normalize_first: bool = False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        key_dim: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(intermediate_dim, int) or intermediate_dim < 1:
            raise ValueError(
                "`intermediate_dim` must be a positive integer; received "
                f"intermediate_dim={intermediate_dim!r}."
            )
        if key_dim is not None and (
            isinstance(key_dim, bool) or not isinstance(key_dim, int) or key_dim < 1
        ):
            raise ValueError(
                "`key_dim` must be a positive integer (the size of each head) or None "
                f"(hidden_dim // num_heads); received key_dim={key_dim!r}."
            )
        for name, rate in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if rate is not None and not 0.0 <= rate < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1); received {name}={rate}.")
        get_activation(activation)  # fail early on an unknown name
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.key_dim = key_dim
        self.dropout = dropout
        self.attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _attention(self, name, hidden_dim, query_shape, value_shape=None):
        layer = MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=self.key_dim or check_hidden_dim(hidden_dim, self.num_heads),
            dropout=self.attention_dropout,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )
        layer.build(query_shape, value_shape)
        return layer

    def _layer_norm(self, name, shape):
        layer = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )
        layer.build(shape)
        return layer

    def _build_feedforward(self, shape):
        hidden_dim = shape[-1]
        self.intermediate_dense = keras.layers.Dense(
            self.intermediate_dim,
            activation=get_activation(self.activation),
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="intermediate_dense",
        )
        self.intermediate_dense.build(shape)
        self.output_dense = keras.layers.Dense(
            hidden_dim,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="output_dense",
        )
        self.output_dense.build(tuple(shape[:-1]) + (self.intermediate_dim,))
        self.feedforward_layer_norm = self._layer_norm("feedforward_layer_norm", shape)
        self.feedforward_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="feedforward_dropout"
        )

    def _residual(self, x, sublayer, layer_norm, dropout, training):
        """Applies `sublayer` with the residual and LayerNorm placement of this block.

        `sublayer` returns its output, or a tuple whose first item is the output
        (the rest, e.g. attention scores or a cache, is passed back unchanged).
        """
        inputs = layer_norm(x) if self.normalize_first else x
        result = sublayer(inputs)
        extras = ()
        if isinstance(result, tuple):
            result, extras = result[0], result[1:]
        x = x + dropout(result, training=training)
        if not self.normalize_first:
            x = layer_norm(x)
        return (x, *extras)

    def _feedforward(self, x, training):
        def ffn(inputs):
            return self.output_dense(self.intermediate_dense(inputs))

        (x,) = self._residual(
            x, ffn, self.feedforward_layer_norm, self.feedforward_dropout, training
        )
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation": self.activation
                if isinstance(self.activation, str)
                else keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalize_first": self.normalize_first,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "key_dim": self.key_dim,
            }
        )
        return config
