"""Token embeddings plus sinusoidal or learned positions, for Transformer stacks."""

import math

import keras
from keras import ops

from tfbert.layers.position_embedding import PositionEmbedding, check_sequence_length
from tfbert.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from tfbert.layers.utils import clone_initializer

POSITION_ENCODINGS = ("sinusoidal", "learned")


@keras.saving.register_keras_serializable(package="tfbert")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Embeds token ids, scales them, adds positions, applies dropout.

    As in Vaswani et al. (2017, section 3.4), the token vectors are
    multiplied by sqrt(hidden_dim) when `scale_embeddings` is set, so that
    they match the size of the sinusoidal encodings; the table is then
    initialised with stddev hidden_dim**-0.5. The same table projects the
    decoder's output back to the vocabulary when a model ties them (`reverse=True`).

    Args:
        vocabulary_size: int. Number of token ids.
        hidden_dim: int. Width D of each vector.
        max_sequence_length: int. Longest sequence (the learned table's size;
            for sinusoidal encodings the longest the model accepts).
        position_encoding: "sinusoidal" (default) or "learned".
        scale_embeddings: bool, default True. Multiply token vectors by sqrt(D).
        dropout: float, default 0.0. Dropout on the sum.
        embeddings_initializer: default None (normal with stddev D**-0.5 when
            scaling, else stddev 0.02).

    Example:
        embedding = TokenAndPositionEmbedding(8000, 64, max_sequence_length=128)
        x = embedding(np.array([[2, 57, 912, 3]], "int32"))  # (1, 4, 64)
    """

    def __init__(
        self,
        vocabulary_size: int,
        hidden_dim: int,
        max_sequence_length: int,
        position_encoding: str = "sinusoidal",
        scale_embeddings: bool = True,
        dropout: float = 0.0,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("vocabulary_size", vocabulary_size),
            ("hidden_dim", hidden_dim),
            ("max_sequence_length", max_sequence_length),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer; received {name}={value!r}."
                )
        if position_encoding not in POSITION_ENCODINGS:
            raise ValueError(
                f"`position_encoding` must be one of {POSITION_ENCODINGS}; received "
                f"position_encoding={position_encoding!r}."
            )
        if position_encoding == "sinusoidal" and hidden_dim % 2:
            raise ValueError(
                "Sinusoidal positions need an even `hidden_dim`; received "
                f"hidden_dim={hidden_dim}."
            )
        if embeddings_initializer is None:
            stddev = hidden_dim**-0.5 if scale_embeddings else 0.02
            embeddings_initializer = keras.initializers.RandomNormal(stddev=stddev)
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.max_sequence_length = max_sequence_length
        self.position_encoding = position_encoding
        self.scale_embeddings = scale_embeddings
        self.dropout = dropout
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

        self.token_embedding = keras.layers.Embedding(
            vocabulary_size,
            hidden_dim,
            embeddings_initializer=clone_initializer(self.embeddings_initializer),
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        if position_encoding == "learned":
            self.position_embedding = PositionEmbedding(
                max_sequence_length,
                initializer=clone_initializer(self.embeddings_initializer),
                dtype=self.dtype_policy,
                name="position_embedding",
            )
        else:
            self.position_embedding = SinusoidalPositionEncoding(
                dtype=self.dtype_policy, name="position_embedding"
            )
        self.dropout_layer = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )

    def build(self, token_ids_shape):
        self.token_embedding.build(token_ids_shape)
        self.position_embedding.build(tuple(token_ids_shape) + (self.hidden_dim,))
        self.built = True

    def call(self, inputs, start_index=0, reverse: bool = False, training=None):
        """Embeds (B, T) token ids at positions `start_index ..` into (B, T, D).

        With `reverse=True`, `inputs` are (B, T, D) hidden states and the
        result is (B, T, vocabulary_size) logits: the states times the token
        table transposed (a tied output projection, as a layer call so that
        functional models read the table's current value).
        """
        if reverse:
            table = ops.cast(self.token_embedding.embeddings, inputs.dtype)
            return ops.einsum("btd,vd->btv", inputs, table)
        check_sequence_length(inputs.shape[-1], self.max_sequence_length)
        x = self.token_embedding(inputs)
        if self.scale_embeddings:
            x = x * ops.cast(math.sqrt(self.hidden_dim), x.dtype)
        x = x + self.position_embedding(x, start_index=start_index)
        return self.dropout_layer(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "max_sequence_length": self.max_sequence_length,
                "position_encoding": self.position_encoding,
                "scale_embeddings": self.scale_embeddings,
                "dropout": self.dropout,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
