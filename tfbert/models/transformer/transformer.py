"""The encoder-decoder Transformer (Vaswani et al., 2017) as a functional Keras model."""

import keras
import numpy as np
from keras import ops

from tfbert.layers.token_and_position_embedding import TokenAndPositionEmbedding
from tfbert.layers.transformer_decoder_block import TransformerDecoderBlock
from tfbert.layers.transformer_encoder_block import TransformerEncoderBlock
from tfbert.models.transformer.generative_model import (
    GenerativeModel,
    as_int_array,
    check_prompt,
    check_sizes,
    check_token_ids,
)
from tfbert.models.transformer.transformer_presets import TRANSFORMER_PRESETS, preset_kwargs

INPUT_NAMES = (
    "encoder_token_ids",
    "encoder_padding_mask",
    "decoder_token_ids",
    "decoder_padding_mask",
)


def _vocabulary_sizes(vocabulary_size, share_embeddings: bool) -> tuple[int, int]:
    if isinstance(vocabulary_size, (list, tuple)):
        if len(vocabulary_size) != 2:
            raise ValueError(
                "`vocabulary_size` must be an int or a (source, target) pair; received "
                f"vocabulary_size={vocabulary_size!r}."
            )
        source, target = vocabulary_size
    else:
        source = target = vocabulary_size
    for value in (source, target):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                "`vocabulary_size` must be a positive int or a pair of them; received "
                f"vocabulary_size={vocabulary_size!r}."
            )
    if share_embeddings and source != target:
        raise ValueError(
            "`share_embeddings=True` needs one vocabulary, but "
            f"vocabulary_size={vocabulary_size!r} gives two sizes: pass one int, or "
            "share_embeddings=False."
        )
    return source, target


@keras.saving.register_keras_serializable(package="tfbert")
class Transformer(GenerativeModel):
    """Encoder-decoder Transformer for translation and summarization, trained with `fit`.

    Inputs are a dict of int32 tensors `encoder_token_ids` and
    `encoder_padding_mask` (B, S), `decoder_token_ids` and
    `decoder_padding_mask` (B, T); the decoder ids are the target shifted
    right (start token first). The output is float32 logits (B, T, V) for the
    next target token. `compile()` without a loss uses label-smoothed
    cross-entropy (e = 0.1) that skips padding labels, and token accuracy.
    Post-LN blocks as in the paper (`normalize_first=True` gives pre-LN
    blocks and a final LayerNorm on each stack); ReLU feed-forward; token
    vectors scaled by sqrt(hidden_dim) plus sinusoidal (or learned)
    positions; one embedding table for source, target and the output
    projection when `share_embeddings` and `tie_output` are set (the paper).

    Args:
        vocabulary_size: int, or a (source, target) pair when
            `share_embeddings=False`.
        num_layers: int. Encoder blocks, and as many decoder blocks.
        num_heads: int. Attention heads; must divide `hidden_dim`.
        hidden_dim: int. Model width (d_model).
        intermediate_dim: int. Feed-forward width (d_ff).
        dropout: float, default 0.1. On embeddings, attention and sublayers.
        max_sequence_length: int, default 256. Longest source or target.
        share_embeddings: bool, default True.
        tie_output: bool, default True. Logits = decoder states x target
            embedding table transposed; False adds a dense output layer.
        normalize_first: bool, default False.
        position_encoding: "sinusoidal" (default) or "learned".
        activation: str, default "relu".
        layer_norm_epsilon: float, default 1e-6.
        pad_token_id, start_token_id, end_token_id: ints, default 0, 2, 3:
            tfbert's WordPiece layout ([PAD], [UNK], [CLS], [SEP], ...), with
            [CLS] starting and [SEP] ending each target.
        dtype: dtype policy, e.g. "mixed_bfloat16"; default the global policy.

    Example:
        model = Transformer.from_preset("transformer_tiny", vocabulary_size=8000)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(batches, epochs=10)  # ({4 inputs}, target ids) batches
        ids = model.generate({"encoder_token_ids": source_ids}, max_length=40, sampler="beam")
    """

    DEFAULT_LABEL_SMOOTHING = 0.1
    CONFIG_ARGS = (
        "vocabulary_size",
        "num_layers",
        "num_heads",
        "hidden_dim",
        "intermediate_dim",
        "dropout",
        "max_sequence_length",
        "share_embeddings",
        "tie_output",
        "normalize_first",
        "position_encoding",
        "activation",
        "layer_norm_epsilon",
        "pad_token_id",
        "start_token_id",
        "end_token_id",
    )

    def __init__(
        self,
        vocabulary_size,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        max_sequence_length: int = 256,
        share_embeddings: bool = True,
        tie_output: bool = True,
        normalize_first: bool = False,
        position_encoding: str = "sinusoidal",
        activation="relu",
        layer_norm_epsilon: float = 1e-6,
        pad_token_id: int = 0,
        start_token_id: int = 2,
        end_token_id: int = 3,
        dtype=None,
        **kwargs,
    ):
        config = dict(locals())  # the constructor arguments
        source_size, target_size = _vocabulary_sizes(vocabulary_size, share_embeddings)
        check_sizes(num_layers, hidden_dim, num_heads)
        check_token_ids(min(source_size, target_size), pad_token_id=pad_token_id)
        # Start and end tokens belong to the target side only.
        check_token_ids(target_size, start_token_id=start_token_id, end_token_id=end_token_id)

        # === Layers ===
        def embedding(size, name):
            return TokenAndPositionEmbedding(
                size,
                hidden_dim,
                max_sequence_length,
                position_encoding=position_encoding,
                dropout=dropout,
                dtype=dtype,
                name=name,
            )

        self.decoder_embedding = embedding(target_size, "decoder_embedding")
        self.encoder_embedding = (
            self.decoder_embedding
            if share_embeddings
            else embedding(source_size, "encoder_embedding")
        )
        block_kwargs = {
            "num_heads": num_heads,
            "intermediate_dim": intermediate_dim,
            "dropout": dropout,
            "activation": activation,
            "layer_norm_epsilon": layer_norm_epsilon,
            "normalize_first": normalize_first,
            "dtype": dtype,
        }
        self.encoder_layers = [
            TransformerEncoderBlock(**block_kwargs, name=f"encoder_layer_{i}")
            for i in range(num_layers)
        ]
        self.decoder_layers = [
            TransformerDecoderBlock(**block_kwargs, name=f"decoder_layer_{i}")
            for i in range(num_layers)
        ]
        self.encoder_final_norm = self.decoder_final_norm = None
        if normalize_first:
            self.encoder_final_norm, self.decoder_final_norm = (
                keras.layers.LayerNormalization(
                    epsilon=layer_norm_epsilon, dtype=dtype, name=f"{side}_final_norm"
                )
                for side in ("encoder", "decoder")
            )
        self.output_dense = None
        if not tie_output:
            self.output_dense = keras.layers.Dense(target_size, dtype=dtype, name="output_dense")

        # === Functional model ===
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES
        }
        context = {
            "encoder_output": self.encode(
                inputs["encoder_token_ids"], inputs["encoder_padding_mask"]
            ),
            "encoder_padding_mask": inputs["encoder_padding_mask"],
        }
        logits = self._decode(
            inputs["decoder_token_ids"], inputs["decoder_padding_mask"], context=context
        )
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        if dtype is not None:
            self.dtype_policy = dtype

        # === Config ===
        for arg in self.CONFIG_ARGS:
            setattr(self, arg, config[arg])
        if isinstance(vocabulary_size, tuple):  # as the config reads back from JSON
            self.vocabulary_size = list(vocabulary_size)

    def encode(self, token_ids, padding_mask, training=None):
        """(B, S) source ids and padding mask -> (B, S, hidden_dim) encoder output."""
        x = self.encoder_embedding(token_ids, training=training)
        for block in self.encoder_layers:
            x = block(x, padding_mask=padding_mask, training=training)
        if self.encoder_final_norm is not None:
            x = self.encoder_final_norm(x)
        return x

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "Transformer":
        """A randomly initialised Transformer of a named size.

        Args:
            name: "transformer_base" or "transformer_big" (the paper's sizes,
                37,000 shared tokens), "transformer_tiny" (L2/H128) or
                "transformer_small" (L3/H256) for CPU budgets.
            **overrides: any constructor kwarg, e.g. `vocabulary_size=8000`.
        """
        return cls(**preset_kwargs(TRANSFORMER_PRESETS, name, overrides))

    # === Generation ===

    def generate(self, inputs, max_length: int | None = None, **kwargs) -> np.ndarray:
        """Translates source ids; returns (B, max_length) int32 target ids.

        Args:
            inputs: (B, S) source token ids, or a dict with
                `encoder_token_ids`, optional `encoder_padding_mask` (default:
                ids != pad_token_id) and an optional target prompt
                `decoder_token_ids`/`decoder_padding_mask` (default: the start
                token alone).
            max_length, sampler, use_cache, num_beams, seed, jit_compile: see
                `GenerativeModel.generate`. Rows start with the start token.
        """
        return super().generate(inputs, max_length, **kwargs)

    def _standardize_generation_inputs(self, inputs, max_length) -> dict:
        if not isinstance(inputs, dict):
            inputs = {"encoder_token_ids": inputs}
        unknown = set(inputs) - set(INPUT_NAMES)
        if unknown or "encoder_token_ids" not in inputs:
            raise ValueError(
                "Transformer.generate takes source ids (batch, length) or a dict with "
                f"'encoder_token_ids' and optionally {INPUT_NAMES[1:]}; received keys "
                f"{sorted(inputs)}."
            )
        source = as_int_array("encoder_token_ids", inputs["encoder_token_ids"])
        if source.shape[1] > self.max_sequence_length:
            raise ValueError(
                f"`encoder_token_ids` has {source.shape[1]} tokens, more than the model's "
                f"max_sequence_length={self.max_sequence_length}; truncate the sources."
            )
        standard = {
            "encoder_token_ids": source,
            "encoder_padding_mask": as_int_array(
                "encoder_padding_mask",
                inputs.get("encoder_padding_mask", source != self.pad_token_id),
            ),
        }
        if "decoder_token_ids" in inputs:
            prompt = as_int_array("decoder_token_ids", inputs["decoder_token_ids"])
            mask = as_int_array(
                "decoder_padding_mask",
                inputs.get("decoder_padding_mask", prompt != self.pad_token_id),
            )
            check_prompt("decoder_token_ids", mask, max_length)
            standard.update(decoder_token_ids=prompt, decoder_padding_mask=mask)
        return standard

    def _prepare_generation(self, inputs, max_length):
        source_mask = inputs["encoder_padding_mask"]
        context = {
            "encoder_output": self.encode(inputs["encoder_token_ids"], source_mask),
            "encoder_padding_mask": source_mask,
        }
        if "decoder_token_ids" in inputs:
            prompt, mask = self._prompt_buffer(
                inputs["decoder_token_ids"], inputs["decoder_padding_mask"], max_length
            )
            index = ops.min(ops.sum(ops.cast(mask, "int32"), axis=1))
            return prompt, mask, index, context, True
        batch_size = ops.shape(source_mask)[0]
        start = ops.full((batch_size, 1), self.start_token_id, "int32")
        prompt, mask = self._prompt_buffer(start, ops.ones_like(start), max_length)
        return prompt, mask, 1, context, False
