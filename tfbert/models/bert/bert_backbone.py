"""The BERT encoder (Devlin et al., 2018) as a functional Keras model."""

import keras

from tfbert.layers.bert_embeddings import BertEmbeddings
from tfbert.layers.transformer_encoder_block import TransformerEncoderBlock
from tfbert.layers.utils import check_hidden_dim, clone_initializer
from tfbert.models.bert.bert_checkpoint import (
    backbone_config,
    backbone_table,
    export_tensors,
    hf_config,
    load_weights,
    read_checkpoint,
    write_checkpoint,
)
from tfbert.models.bert.bert_presets import BERT_PRESETS
from tfbert.models.distributed_trainer import DistributedTrainer

# Checkpoints of BertForMaskedLM and the like may lack the pooler.
POOLER_WEIGHTS = ("pooler/kernel", "pooler/bias")

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _per_layer(name: str, value, num_layers: int) -> list[int]:
    """`value` (an int, or a list of one int per layer) as a list of num_layers ints."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_layers or not all(_is_positive_int(v) for v in value):
            raise ValueError(
                f"`{name}` must be a positive integer or a list of num_layers={num_layers} "
                f"positive integers; received {name}={value!r}."
            )
        return list(value)
    if not _is_positive_int(value):
        raise ValueError(
            f"`{name}` must be a positive integer or a list of num_layers={num_layers} "
            f"positive integers; received {name}={value!r}."
        )
    return [value] * num_layers


@keras.saving.register_keras_serializable(package="tfbert")
class BertBackbone(DistributedTrainer):
    """BERT encoder: embeddings, `num_layers` post-LN encoder blocks, pooler.

    Inputs are a dict of int32 (B, T) tensors `token_ids`, `segment_ids` and
    `padding_mask` (1 for real tokens). Outputs are a dict with
    `sequence_output` (B, T, hidden_dim) and `pooled_output` (B, hidden_dim),
    the tanh-projected [CLS] vector; with `return_hidden_states` also
    `hidden_states`, a list of num_layers + 1 tensors (embeddings, then each
    block), and with `return_attention_scores` also `attention_scores`, a list
    of num_layers (B, num_heads, T, T) probabilities.

    Sizes may differ per layer (a list with one entry per block for
    `num_heads` and `intermediate_dim`, with `head_dim` fixing the head
    size): the shape structured pruning leaves (`tfbert.compression.
    structured_pruning`). Such a backbone trains, saves as `.keras` and
    exports like any other, but has no Hugging Face checkpoint layout.

    Args:
        vocabulary_size: int. Number of token ids.
        num_layers: int. Number of encoder blocks.
        num_heads: int or list of num_layers ints. Attention heads per
            block; an int must divide `hidden_dim` unless `head_dim` is given.
        hidden_dim: int. Model width.
        intermediate_dim: int or list of num_layers ints. Feed-forward width
            per block.
        max_sequence_length: int, default 512. Longest input.
        num_segments: int, default 2. Segment (token type) ids.
        dropout: float, default 0.1. Hidden and attention dropout.
        attention_dropout: float, default None (= `dropout`).
        activation: str, default "gelu" (exact erf GELU).
        layer_norm_epsilon: float, default 1e-12.
        initializer_range: float, default 0.02. Stddev of the truncated normal
            initializer.
        return_hidden_states: bool, default False.
        return_attention_scores: bool, default False.
        dtype: dtype policy, e.g. "mixed_bfloat16"; default the global policy.
        head_dim: int, default None (= hidden_dim // num_heads). Size of each
            attention head; required when `num_heads` is a list.

    Example:
        backbone = BertBackbone.from_preset("bert_tiny")
        ids = np.array([[101, 7592, 2088, 102]], "int32")
        out = backbone({"token_ids": ids, "segment_ids": 0 * ids,
                        "padding_mask": np.ones_like(ids)})
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int | list[int],
        hidden_dim: int,
        intermediate_dim: int | list[int],
        max_sequence_length: int = 512,
        num_segments: int = 2,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        activation="gelu",
        layer_norm_epsilon: float = 1e-12,
        initializer_range: float = 0.02,
        return_hidden_states: bool = False,
        return_attention_scores: bool = False,
        dtype=None,
        head_dim: int | None = None,
        **kwargs,
    ):
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(
                f"`num_layers` must be a positive integer; received num_layers={num_layers!r}."
            )
        heads = _per_layer("num_heads", num_heads, num_layers)
        widths = _per_layer("intermediate_dim", intermediate_dim, num_layers)
        if head_dim is None:
            if isinstance(num_heads, (list, tuple)):
                raise ValueError(
                    "`head_dim` is required when `num_heads` is a list (per-layer head "
                    f"counts); received num_heads={num_heads!r}, head_dim=None."
                )
            check_hidden_dim(hidden_dim, num_heads)
        elif not _is_positive_int(head_dim):
            raise ValueError(
                "`head_dim` must be a positive integer or None (hidden_dim // num_heads); "
                f"received head_dim={head_dim!r}."
            )
        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)

        # === Layers ===
        self.embeddings = BertEmbeddings(
            vocabulary_size=vocabulary_size,
            hidden_dim=hidden_dim,
            max_sequence_length=max_sequence_length,
            num_segments=num_segments,
            dropout=dropout,
            layer_norm_epsilon=layer_norm_epsilon,
            initializer=clone_initializer(initializer),
            dtype=dtype,
            name="embeddings",
        )
        self.transformer_layers = [
            TransformerEncoderBlock(
                num_heads=heads[i],
                intermediate_dim=widths[i],
                dropout=dropout,
                attention_dropout=attention_dropout,
                activation=activation,
                layer_norm_epsilon=layer_norm_epsilon,
                kernel_initializer=clone_initializer(initializer),
                key_dim=head_dim,
                dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        self.pooler = keras.layers.Dense(
            hidden_dim,
            activation="tanh",
            kernel_initializer=clone_initializer(initializer),
            dtype=dtype,
            name="pooler",
        )

        # === Functional model ===
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES
        }
        x, hidden_states, attention_scores = self._encode(
            inputs, collect_attention_scores=return_attention_scores
        )
        outputs = {"sequence_output": x, "pooled_output": self.pooler(x[:, 0, :])}
        if return_hidden_states:
            outputs["hidden_states"] = hidden_states
        if return_attention_scores:
            outputs["attention_scores"] = attention_scores
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        if dtype is not None:
            # Functional models drop `dtype`; the heads built on this backbone
            # and its saved config read the policy from here.
            self.dtype_policy = dtype

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        # Lists, not tuples: the config reads back from JSON as lists.
        self.num_heads = list(num_heads) if isinstance(num_heads, tuple) else num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = (
            list(intermediate_dim) if isinstance(intermediate_dim, tuple) else intermediate_dim
        )
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.return_hidden_states = return_hidden_states
        self.return_attention_scores = return_attention_scores
        self.head_dim = head_dim

    def _encode(self, inputs, output_positions=None, collect_attention_scores=False):
        """Embeddings then every block; the last block only at `output_positions`."""
        x = self.embeddings(inputs["token_ids"], inputs["segment_ids"])
        hidden_states, attention_scores = [x], []
        last = len(self.transformer_layers) - 1
        for index, block in enumerate(self.transformer_layers):
            x = block(
                x,
                padding_mask=inputs["padding_mask"],
                output_positions=output_positions if index == last else None,
                return_attention_scores=collect_attention_scores,
            )
            if collect_attention_scores:
                x, scores = x
                attention_scores.append(scores)
            hidden_states.append(x)
        return x, hidden_states, attention_scores

    def encode_positions(self, inputs, positions):
        """Final hidden states (B, K, hidden_dim) at `positions` (B, K) only.

        Equals gathering `sequence_output` at `positions`, but the last block
        computes just those K positions (they still attend to every token).
        Heads that read a few positions (masked LM, [CLS]) use it to skip the
        last block's work for all other tokens.
        """
        x, _, _ = self._encode(inputs, output_positions=positions)
        return x

    @property
    def token_embedding(self) -> keras.layers.Embedding:
        """The (vocabulary_size, hidden_dim) token embedding, for weight tying."""
        return self.embeddings.token_embedding

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "BertBackbone":
        """A randomly initialised backbone of a published size.

        Args:
            name: one of "bert_tiny" (L2/H128), "bert_mini" (L4/H256),
                "bert_small" (L4/H512), "bert_medium" (L8/H512),
                "bert_base" (L12/H768), "bert_large" (L24/H1024).
            **overrides: any constructor kwarg, e.g. `vocabulary_size=8000`.
        """
        if name not in BERT_PRESETS:
            raise ValueError(
                f"Unknown preset name={name!r}. Available presets: {', '.join(BERT_PRESETS)}."
            )
        return cls(**{**BERT_PRESETS[name], **overrides})

    @classmethod
    def from_checkpoint(cls, path, **overrides) -> "BertBackbone":
        """A backbone with the weights of a Hugging Face or google-research/bert checkpoint.

        Every setting the checkpoint's config declares is honoured (sizes,
        `hidden_act` such as exact "gelu" or tanh "gelu_new", LayerNorm
        epsilon, position and segment table sizes); every weight is mapped by
        name, and a checkpoint with missing, unexpected or mis-shaped weights
        is refused with their names. Pretraining-head weights are left to
        `BertPretrainer.from_checkpoint`. A missing pooler (e.g. a
        BertForMaskedLM checkpoint) keeps its random initialisation, with a
        warning. No torch is needed.

        Args:
            path: a Hugging Face folder (config.json + model.safetensors or
                pytorch_model.bin) or a google-research/bert folder
                (bert_config.json + bert_model.ckpt.*) or checkpoint prefix.
            **overrides: constructor kwargs to change, e.g. `dropout=0.0` or
                `dtype="mixed_bfloat16"`.
        """
        config, tensors = read_checkpoint(path)
        backbone = cls(**{**backbone_config(config), **overrides})
        load_weights(
            backbone,
            {name: value for name, value in tensors.items() if not name.startswith("cls.")},
            backbone_table(backbone.num_layers),
            optional=POOLER_WEIGHTS,
            source=f"checkpoint {path!r}",
        )
        return backbone

    def save_checkpoint(self, directory, tokenizer=None) -> str:
        """Writes the weights as a Hugging Face `BertModel` folder.

        `config.json` and `model.safetensors` (plus `vocab.txt` and
        `tokenizer_config.json` when a `BertTokenizer` is given), loadable
        by `transformers.BertModel.from_pretrained` and `from_checkpoint`.
        The folder must be new or empty.
        """
        table = backbone_table(self.num_layers)
        return write_checkpoint(
            directory, hf_config(self, "BertModel"), export_tensors(self, table), tokenizer
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "max_sequence_length": self.max_sequence_length,
            "num_segments": self.num_segments,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": self.initializer_range,
            "return_hidden_states": self.return_hidden_states,
            "return_attention_scores": self.return_attention_scores,
            "head_dim": self.head_dim,
            **self.pruning_config(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
