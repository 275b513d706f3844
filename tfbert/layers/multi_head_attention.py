"""Multi-head scaled dot-product attention (Vaswani et al., 2017)."""

import math

import keras
from keras import ops

from tfbert.layers.masks import compute_causal_mask, merge_attention_masks
from tfbert.layers.utils import clone_initializer

# Shapes: B=batch, T=query length, S=key length, D=model width,
# N=heads, H=head size.

# Added to masked scores before the softmax. Finite, so a fully masked row
# (a padded query under a causal mask) gives a uniform row, never NaN.
_MASKED_SCORE = -1e9


@keras.saving.register_keras_serializable(package="tfbert")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention with padding, attention and causal masks and a cache.

    Projections are `EinsumDense` layers with the kernel layout of
    `keras.layers.MultiHeadAttention` ((D, N, H) for query/key/value,
    (N, H, D) for the output), so weights move between the two unchanged and
    `model.quantize` treats them like any Keras projection. Scores, masking
    and the softmax run in float32 under mixed precision.

    Args:
        num_heads: int. Number of attention heads N.
        key_dim: int. Size H of each query/key head.
        value_dim: int, default None (= `key_dim`). Size of each value head.
        output_dim: int, default None (= the query's last dimension).
        dropout: float, default 0.0. Dropout on the attention probabilities.
        use_bias: bool, default True. Bias in all four projections.
        kernel_initializer: initializer, default "glorot_uniform".
        bias_initializer: initializer, default "zeros".

    Example:
        attention = MultiHeadAttention(num_heads=4, key_dim=16)
        x = np.random.rand(2, 10, 64).astype("float32")
        y = attention(x, padding_mask=np.ones((2, 10), "int32"))  # (2, 10, 64)
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        output_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("num_heads", num_heads), ("key_dim", key_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer; received {name}={value!r}."
                )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1); received dropout={dropout}.")
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.output_dim = output_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _projection(self, name, equation, output_shape, bias_axes):
        return keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        for name, shape in (
            ("query", query_shape),
            ("value", value_shape),
            ("key", key_shape),
        ):
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(
                    f"`{name}` must have shape (batch, length, features) with a "
                    f"known feature size; received shape {tuple(shape)}."
                )
        n, h, hv = self.num_heads, self.key_dim, self.value_dim
        self.query_dense = self._projection("query", "btd,dnh->btnh", (None, n, h), "nh")
        self.query_dense.build(query_shape)
        self.key_dense = self._projection("key", "bsd,dnh->bsnh", (None, n, h), "nh")
        self.key_dense.build(key_shape)
        self.value_dense = self._projection("value", "bsd,dnh->bsnh", (None, n, hv), "nh")
        self.value_dense.build(value_shape)
        output_dim = self.output_dim or query_shape[-1]
        self.output_dense = self._projection(
            "attention_output", "btnh,nhd->btd", (None, output_dim), "d"
        )
        self.output_dense.build((query_shape[0], query_shape[1], n, hv))
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.built = True

    def call(
        self,
        query,
        value=None,
        key=None,
        padding_mask=None,
        attention_mask=None,
        use_causal_mask: bool = False,
        head_mask=None,
        cache=None,
        cache_index=None,
        return_attention_scores: bool = False,
        training=None,
    ):
        """Attends from `query` to `key`/`value` (self-attention if both are None).

        Args:
            query: (B, T, Dq).
            value: (B, S, Dv), default None (= query).
            key: (B, S, Dk), default None (= value).
            padding_mask: (B, S), 1/True for real key tokens.
            attention_mask: (B, T, S), 1/True where query t may see key s.
            use_causal_mask: bool. Query t sees keys at positions <= t (offset by
                `cache_index` when decoding with a cache).
            head_mask: (N,) or (B, N). Multiplies each head's output; 0 removes a
                head, and its gradient scores the head's importance.
            cache: (B, 2, S, N, H) projected keys and values. With `cache_index`
                the new keys/values are written at that position and attention
                runs over the whole cache; without it the cache is used as is
                (precomputed cross-attention).
            cache_index: scalar int, position of the first query in the cache.
            return_attention_scores: bool. Also return the (B, N, T, S)
                attention probabilities (before dropout).

        Returns:
            `output` (B, T, output_dim), followed by `attention_scores` when
            asked and by the updated `cache` when a cache was given.
        """
        if cache_index is not None and cache is None:
            raise ValueError("`cache_index` was given without a `cache`.")
        value = query if value is None else value
        key = value if key is None else key

        # (B, T, N, H), pre-scaled so the scale costs T*H, not T*S.
        q = self.query_dense(query)
        q = q * ops.cast(1.0 / math.sqrt(self.key_dim), q.dtype)
        if cache is not None and cache_index is None:
            k, v = cache[:, 0], cache[:, 1]
        else:
            k = self.key_dense(key)  # (B, S, N, H)
            v = self.value_dense(value)  # (B, S, N, Hv)
            if cache is not None:
                start = [0, cache_index, 0, 0]
                k = ops.slice_update(cache[:, 0], start, ops.cast(k, cache.dtype))
                v = ops.slice_update(cache[:, 1], start, ops.cast(v, cache.dtype))
                cache = ops.stack([k, v], axis=1)  # (B, 2, S, N, H)

        causal_mask = None
        if use_causal_mask:
            causal_mask = compute_causal_mask(
                ops.shape(q)[0], ops.shape(q)[1], ops.shape(k)[1], cache_index
            )
        mask = merge_attention_masks(padding_mask, attention_mask, causal_mask)

        # (B, N, T, S); softmax in float32 whatever the compute dtype.
        scores = ops.cast(ops.einsum("btnh,bsnh->bnts", q, k), "float32")
        if mask is not None:
            scores = ops.where(ops.expand_dims(mask, 1), scores, _MASKED_SCORE)
        probabilities = ops.softmax(scores, axis=-1)
        dropped = self.dropout_layer(
            ops.cast(probabilities, self.compute_dtype), training=training
        )
        context = ops.einsum("bnts,bsnh->btnh", dropped, v)  # (B, T, N, Hv)
        if head_mask is not None:
            context = context * self._broadcast_head_mask(head_mask, context.dtype)
        output = self.output_dense(context)  # (B, T, D)

        results = (output,)
        if return_attention_scores:
            results += (probabilities,)
        if cache is not None:
            results += (cache,)
        return results[0] if len(results) == 1 else results

    def _broadcast_head_mask(self, head_mask, dtype):
        rank = len(head_mask.shape)
        if rank not in (1, 2) or head_mask.shape[-1] != self.num_heads:
            raise ValueError(
                f"`head_mask` must have shape (num_heads,) or (batch, num_heads) "
                f"with num_heads={self.num_heads}; received shape "
                f"{tuple(head_mask.shape)}."
            )
        head_mask = ops.cast(head_mask, dtype)
        if rank == 1:
            head_mask = ops.expand_dims(head_mask, 0)
        return head_mask[:, None, :, None]  # (B or 1, 1, N, 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "output_dim": self.output_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
