"""Transformer decoder block: causal self-attention, cross-attention, feed-forward."""

import keras
from keras import ops

from tfbert.layers.transformer_block import TransformerBlock


@keras.saving.register_keras_serializable(package="tfbert")
class TransformerDecoderBlock(TransformerBlock):
    """Causal self-attention, optional cross-attention, feed-forward; with caches.

    Cross-attention is built when the block is first called with an
    `encoder_sequence`; without one it is a decoder-only (GPT-style) block.

    Args: as `TransformerEncoderBlock` (num_heads, intermediate_dim, dropout,
        attention_dropout, activation, layer_norm_epsilon, normalize_first,
        kernel_initializer, bias_initializer, key_dim).

    Example:
        block = TransformerDecoderBlock(num_heads=4, intermediate_dim=256)
        target = np.random.rand(2, 7, 64).astype("float32")
        source = np.random.rand(2, 9, 64).astype("float32")
        y = block(target, source)  # (2, 7, 64)
    """

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        hidden_dim = decoder_sequence_shape[-1]
        self.self_attention = self._attention("self_attention", hidden_dim, decoder_sequence_shape)
        self.self_attention_layer_norm = self._layer_norm(
            "self_attention_layer_norm", decoder_sequence_shape
        )
        self.self_attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="self_attention_dropout"
        )
        self.cross_attention = None
        if encoder_sequence_shape is not None:
            self.cross_attention = self._attention(
                "cross_attention",
                hidden_dim,
                decoder_sequence_shape,
                encoder_sequence_shape,
            )
            self.cross_attention_layer_norm = self._layer_norm(
                "cross_attention_layer_norm", decoder_sequence_shape
            )
            self.cross_attention_dropout = keras.layers.Dropout(
                self.dropout, dtype=self.dtype_policy, name="cross_attention_dropout"
            )
        self._build_feedforward(decoder_sequence_shape)
        self.built = True

    def compute_cross_attention_cache(self, encoder_sequence):
        """Projects `encoder_sequence` (B, S, D) once into a (B, 2, S, N, H) cache."""
        if self.cross_attention is None:
            raise ValueError(
                "This block has no cross-attention (it was built without an "
                "`encoder_sequence`), so it has no cross-attention cache."
            )
        key = self.cross_attention.key_dense(encoder_sequence)
        value = self.cross_attention.value_dense(encoder_sequence)
        return ops.stack([key, value], axis=1)

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        self_attention_cache=None,
        self_attention_cache_index=None,
        cross_attention_cache=None,
        use_causal_mask: bool = True,
        training=None,
    ):
        """Decodes (B, T, D) `decoder_sequence`, attending to `encoder_sequence`.

        Args:
            decoder_sequence: (B, T, D).
            encoder_sequence: (B, S, D) or None.
            decoder_padding_mask: (B, T) or, with a cache, (B, cache length).
            decoder_attention_mask: (B, T, T).
            encoder_padding_mask: (B, S).
            encoder_attention_mask: (B, T, S).
            self_attention_cache: (B, 2, cache length, N, H) keys/values of earlier
                steps; the new ones are written at `self_attention_cache_index`.
            cross_attention_cache: (B, 2, S, N, H) from
                `compute_cross_attention_cache`, reused across steps.
            use_causal_mask: bool, default True.

        Returns:
            The (B, T, D) output; with a `self_attention_cache`, the tuple
            (output, self_attention_cache), plus the cross-attention cache when
            the block has cross-attention.
        """
        uses_cache = self_attention_cache is not None
        if uses_cache and self_attention_cache_index is None:
            raise ValueError(
                "`self_attention_cache` needs `self_attention_cache_index`, the "
                "position of the first new token in the cache."
            )
        has_encoder = encoder_sequence is not None or cross_attention_cache is not None
        if has_encoder and self.cross_attention is None:
            raise ValueError(
                "This block was built without cross-attention (first called "
                "without `encoder_sequence`), so it cannot attend to an encoder."
            )
        if self.cross_attention is not None and not has_encoder:
            raise ValueError(
                "This block has cross-attention; pass `encoder_sequence` or "
                "`cross_attention_cache`."
            )

        def self_attend(x):
            return self.self_attention(
                x,
                padding_mask=decoder_padding_mask,
                attention_mask=decoder_attention_mask,
                use_causal_mask=use_causal_mask,
                cache=self_attention_cache,
                cache_index=self_attention_cache_index,
                training=training,
            )

        x, *new_self_cache = self._residual(
            decoder_sequence,
            self_attend,
            self.self_attention_layer_norm,
            self.self_attention_dropout,
            training,
        )

        if self.cross_attention is not None:
            if uses_cache and cross_attention_cache is None:
                cross_attention_cache = self.compute_cross_attention_cache(encoder_sequence)

            def cross_attend(x):
                return self.cross_attention(
                    x,
                    encoder_sequence,
                    padding_mask=encoder_padding_mask,
                    attention_mask=encoder_attention_mask,
                    cache=cross_attention_cache,
                    training=training,
                )

            x, *_ = self._residual(
                x,
                cross_attend,
                self.cross_attention_layer_norm,
                self.cross_attention_dropout,
                training,
            )

        x = self._feedforward(x, training)
        if not uses_cache:
            return x
        if self.cross_attention is None:
            return x, new_self_cache[0]
        return x, new_self_cache[0], cross_attention_cache
