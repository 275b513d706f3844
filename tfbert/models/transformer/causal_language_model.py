"""A decoder-only (GPT-style) language model on tfbert's decoder blocks."""

import keras
import numpy as np
from keras import ops

from tfbert.layers.token_and_position_embedding import TokenAndPositionEmbedding
from tfbert.layers.transformer_decoder_block import TransformerDecoderBlock
from tfbert.models.transformer.generative_model import (
    GenerativeModel,
    as_int_array,
    check_prompt,
    check_sizes,
    check_token_ids,
)
from tfbert.models.transformer.transformer_presets import CAUSAL_LM_PRESETS, preset_kwargs

INPUT_NAMES = ("token_ids", "padding_mask")


@keras.saving.register_keras_serializable(package="tfbert")
class CausalLanguageModel(GenerativeModel):
    """Predicts each next token from the ones before it; generates text with `generate`.

    Inputs are a dict of int32 (B, T) `token_ids` and `padding_mask`; the
    output is float32 logits (B, T, V) for the token after each position, so
    `fit(x={"token_ids": ids[:, :-1], "padding_mask": ...}, y=ids[:, 1:])`
    trains it. `compile()` without a loss uses cross-entropy that skips
    padding labels (no label smoothing) and token accuracy. The blocks are
    `TransformerDecoderBlock`s without cross-attention, pre-LN with a final
    LayerNorm by default (GPT-2), learned positions, output tied to the token
    embedding.

    Args:
        vocabulary_size: int.
        num_layers: int.
        num_heads: int. Must divide `hidden_dim`.
        hidden_dim: int.
        intermediate_dim: int.
        dropout: float, default 0.1.
        max_sequence_length: int, default 256.
        tie_output: bool, default True.
        normalize_first: bool, default True.
        position_encoding: "learned" (default) or "sinusoidal".
        activation: str, default "gelu".
        layer_norm_epsilon: float, default 1e-5.
        pad_token_id, start_token_id, end_token_id: ints, default 0, 2, 3
            (tfbert's WordPiece layout: [PAD], [CLS], [SEP]).
        dtype: dtype policy; default the global policy.

    Example:
        model = CausalLanguageModel.from_preset("causal_lm_tiny", vocabulary_size=8000)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        model.fit({"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}, ids[:, 1:])
        model.generate(prompt_ids, max_length=64, sampler="top_p", seed=0)
    """

    CONFIG_ARGS = (
        "vocabulary_size",
        "num_layers",
        "num_heads",
        "hidden_dim",
        "intermediate_dim",
        "dropout",
        "max_sequence_length",
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
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        dropout: float = 0.1,
        max_sequence_length: int = 256,
        tie_output: bool = True,
        normalize_first: bool = True,
        position_encoding: str = "learned",
        activation="gelu",
        layer_norm_epsilon: float = 1e-5,
        pad_token_id: int = 0,
        start_token_id: int = 2,
        end_token_id: int = 3,
        dtype=None,
        **kwargs,
    ):
        config = dict(locals())  # the constructor arguments
        check_sizes(num_layers, hidden_dim, num_heads)
        check_token_ids(
            vocabulary_size,
            pad_token_id=pad_token_id,
            start_token_id=start_token_id,
            end_token_id=end_token_id,
        )

        # === Layers ===
        self.decoder_embedding = TokenAndPositionEmbedding(
            vocabulary_size,
            hidden_dim,
            max_sequence_length,
            position_encoding=position_encoding,
            scale_embeddings=False,
            dropout=dropout,
            dtype=dtype,
            name="embedding",
        )
        self.decoder_layers = [
            TransformerDecoderBlock(
                num_heads=num_heads,
                intermediate_dim=intermediate_dim,
                dropout=dropout,
                activation=activation,
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=normalize_first,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=dtype,
                name=f"decoder_layer_{i}",
            )
            for i in range(num_layers)
        ]
        self.decoder_final_norm = None
        if normalize_first:
            self.decoder_final_norm = keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=dtype, name="final_norm"
            )
        self.output_dense = None
        if not tie_output:
            self.output_dense = keras.layers.Dense(
                vocabulary_size, dtype=dtype, name="output_dense"
            )

        # === Functional model ===
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES
        }
        logits = self._decode(inputs["token_ids"], inputs["padding_mask"])
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        if dtype is not None:
            self.dtype_policy = dtype

        # === Config ===
        for arg in self.CONFIG_ARGS:
            setattr(self, arg, config[arg])

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CausalLanguageModel":
        """A randomly initialised model of a named size: "causal_lm_tiny" (L2/H128)
        or "causal_lm_mini" (L4/H256); overrides are constructor kwargs."""
        return cls(**preset_kwargs(CAUSAL_LM_PRESETS, name, overrides))

    def generate(self, inputs, max_length: int | None = None, **kwargs) -> np.ndarray:
        """Continues prompts; returns (B, max_length) int32 ids, prompt first.

        Args:
            inputs: (B, P) right-padded prompt ids (at least one token per
                row, e.g. the start token), or a dict with `token_ids` and
                optional `padding_mask` (default: ids != pad_token_id).
            max_length, sampler, use_cache, num_beams, seed, jit_compile: see
                `GenerativeModel.generate`.
        """
        return super().generate(inputs, max_length, **kwargs)

    def _standardize_generation_inputs(self, inputs, max_length) -> dict:
        if not isinstance(inputs, dict):
            inputs = {"token_ids": inputs}
        if set(inputs) - set(INPUT_NAMES) or "token_ids" not in inputs:
            raise ValueError(
                "CausalLanguageModel.generate takes prompt ids (batch, length) or a dict "
                f"with 'token_ids' and optionally 'padding_mask'; received keys {sorted(inputs)}."
            )
        prompt = as_int_array("token_ids", inputs["token_ids"])
        mask = as_int_array(
            "padding_mask", inputs.get("padding_mask", prompt != self.pad_token_id)
        )
        check_prompt("token_ids", mask, max_length)
        return {"token_ids": prompt, "padding_mask": mask}

    def _prepare_generation(self, inputs, max_length):
        prompt, mask = self._prompt_buffer(inputs["token_ids"], inputs["padding_mask"], max_length)
        index = ops.min(ops.sum(ops.cast(mask, "int32"), axis=1))
        return prompt, mask, index, {}, True
