"""BERT's input embeddings: token + segment + learned position, LayerNorm, dropout."""

import keras
import numpy as np
from keras import ops

from tfbert.layers.position_embedding import PositionEmbedding
from tfbert.layers.utils import clone_initializer


def check_id_range(ids, limit: int, name: str, limit_name: str):
    """Raises when concrete ids fall outside [0, limit).

    Runs on eager tensors and NumPy arrays; symbolic tensors in a compiled
    graph pass through (the embedding lookup itself fails there on CPU).
    """
    if isinstance(ids, np.ndarray):
        values = ids
    elif hasattr(ids, "numpy"):
        values = ids.numpy()
    else:
        return
    if values.size and (values.min() < 0 or values.max() >= limit):
        bad = values.max() if values.max() >= limit else values.min()
        raise ValueError(
            f"`{name}` must be in [0, {limit_name}={limit}); received a value "
            f"of {bad}. Check the tokenizer's vocabulary matches the model."
        )


@keras.saving.register_keras_serializable(package="tfbert")
class BertEmbeddings(keras.layers.Layer):
    """Sum of token, segment and position embeddings, then LayerNorm and dropout.

    Args:
        vocabulary_size: int. Number of token ids.
        hidden_dim: int. Embedding width D.
        max_sequence_length: int, default 512. Number of positions.
        num_segments: int, default 2. Number of segment (token type) ids.
        dropout: float, default 0.1.
        layer_norm_epsilon: float, default 1e-12 (BERT's value).
        initializer: initializer, default TruncatedNormal(stddev=0.02).

    Example:
        embeddings = BertEmbeddings(vocabulary_size=30522, hidden_dim=128)
        ids = np.array([[101, 7592, 102]])
        x = embeddings(ids, np.zeros_like(ids))  # (1, 3, 128)
    """

    def __init__(
        self,
        vocabulary_size: int,
        hidden_dim: int,
        max_sequence_length: int = 512,
        num_segments: int = 2,
        dropout: float = 0.1,
        layer_norm_epsilon: float = 1e-12,
        initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("vocabulary_size", vocabulary_size),
            ("hidden_dim", hidden_dim),
            ("max_sequence_length", max_sequence_length),
            ("num_segments", num_segments),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer; received {name}={value!r}."
                )
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        # Reversible: `token_embedding(x, reverse=True)` is the tied output
        # projection of a language-model head (and Keras quantizes both ways).
        self.token_embedding = keras.layers.ReversibleEmbedding(
            vocabulary_size,
            hidden_dim,
            tie_weights=True,
            embeddings_initializer=clone_initializer(self.initializer),
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.segment_embedding = keras.layers.Embedding(
            num_segments,
            hidden_dim,
            embeddings_initializer=clone_initializer(self.initializer),
            dtype=self.dtype_policy,
            name="segment_embedding",
        )
        self.position_embedding = PositionEmbedding(
            max_sequence_length,
            initializer=clone_initializer(self.initializer),
            dtype=self.dtype_policy,
            name="position_embedding",
        )
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy, name="dropout")

    def build(self, token_ids_shape, segment_ids_shape=None):
        if len(token_ids_shape) != 2:
            raise ValueError(
                "`token_ids` must have shape (batch, sequence_length); received "
                f"shape {tuple(token_ids_shape)}."
            )
        embedded_shape = tuple(token_ids_shape) + (self.hidden_dim,)
        self.token_embedding.build(token_ids_shape)
        self.segment_embedding.build(token_ids_shape)
        self.position_embedding.build(embedded_shape)
        self.layer_norm.build(embedded_shape)
        self.built = True

    def call(self, token_ids, segment_ids=None, start_index=0, training=None):
        """Embeds (B, T) `token_ids` and `segment_ids` (default all 0) into (B, T, D)."""
        check_id_range(token_ids, self.vocabulary_size, "token_ids", "vocabulary_size")
        x = self.token_embedding(token_ids)
        x = x + self.position_embedding(x, start_index=start_index)
        if segment_ids is not None:
            check_id_range(segment_ids, self.num_segments, "segment_ids", "num_segments")
            x = x + self.segment_embedding(segment_ids)
        else:
            # Segment 0 everywhere, without a gather.
            x = x + ops.cast(self.segment_embedding.embeddings[0], x.dtype)
        x = self.layer_norm(x)
        return self.dropout_layer(x, training=training)

    def compute_output_shape(self, token_ids_shape, segment_ids_shape=None):
        return tuple(token_ids_shape) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "max_sequence_length": self.max_sequence_length,
                "num_segments": self.num_segments,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
