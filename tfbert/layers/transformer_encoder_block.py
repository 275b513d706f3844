"""Transformer encoder block: self-attention then feed-forward."""

import keras

from tfbert.layers.transformer_block import TransformerBlock
from tfbert.layers.utils import gather_positions


@keras.saving.register_keras_serializable(package="tfbert")
class TransformerEncoderBlock(TransformerBlock):
    """Bidirectional self-attention + feed-forward, post-LN (BERT) or pre-LN.

    Args:
        num_heads: int. Attention heads; must divide the input width unless
            `key_dim` is given.
        intermediate_dim: int. Width of the feed-forward hidden layer.
        dropout: float, default 0.0. Dropout after attention and feed-forward.
        attention_dropout: float, default None (= `dropout`). On attention
            probabilities.
        activation: str or callable, default "gelu" (exact erf GELU). Also
            "relu", "gelu_approximate" (tanh) or any Keras activation.
        layer_norm_epsilon: float, default 1e-5.
        normalize_first: bool, default False. Pre-LN instead of post-LN.
        kernel_initializer: default "glorot_uniform".
        bias_initializer: default "zeros".
        key_dim: int, default None (= input width // num_heads). Size of each
            head; num_heads * key_dim may differ from the input width (heads
            removed by structured pruning), the output projection maps the
            heads back to the input width.

    Example:
        block = TransformerEncoderBlock(num_heads=4, intermediate_dim=256)
        x = np.random.rand(2, 10, 64).astype("float32")
        y = block(x, padding_mask=np.ones((2, 10), "int32"))  # (2, 10, 64)
    """

    def build(self, inputs_shape):
        self.self_attention = self._attention("self_attention", inputs_shape[-1], inputs_shape)
        self.self_attention_layer_norm = self._layer_norm(
            "self_attention_layer_norm", inputs_shape
        )
        self.self_attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="self_attention_dropout"
        )
        self._build_feedforward(inputs_shape)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        head_mask=None,
        output_positions=None,
        return_attention_scores: bool = False,
        training=None,
    ):
        """Encodes (B, T, D) `inputs`.

        Args:
            inputs: (B, T, D).
            padding_mask: (B, T), 1/True for real tokens.
            attention_mask: (B, T, T), 1/True where token t may attend to s.
            head_mask: (N,) or (B, N), multiplies each head's output.
            output_positions: (B, K) int positions, default None. Compute and
                return only these K positions (B, K, D); they still attend to
                all T tokens. A last layer feeding a masked-LM head or a [CLS]
                classifier skips the work for every other position.
            return_attention_scores: bool. Also return (B, N, T or K, T)
                probabilities.
        """
        if self.normalize_first:
            keys = self.self_attention_layer_norm(inputs)
        else:
            keys = inputs
        queries, residual = keys, inputs
        if output_positions is not None:
            # (B, K, D) queries and residuals; (B, K, T) attention mask rows.
            rows = [keys, inputs] + ([attention_mask] if attention_mask is not None else [])
            queries, residual, *mask_rows = gather_positions(
                rows, output_positions, "output_positions"
            )
            attention_mask = mask_rows[0] if mask_rows else None
        attended = self.self_attention(
            queries,
            keys,
            padding_mask=padding_mask,
            attention_mask=attention_mask,
            head_mask=head_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        scores = None
        if return_attention_scores:
            attended, scores = attended
        x = residual + self.self_attention_dropout(attended, training=training)
        if not self.normalize_first:
            x = self.self_attention_layer_norm(x)
        x = self._feedforward(x, training)
        return (x, scores) if return_attention_scores else x
