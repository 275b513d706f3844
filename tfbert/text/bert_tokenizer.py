"""BERT WordPiece tokenization and [CLS] a [SEP] b [SEP] packing as a Keras layer."""

import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
from keras_hub.layers import MultiSegmentPacker

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_vocabulary(vocabulary) -> list[str]:
    """Reads a BERT `vocab.txt` (one token per line) or checks a list of tokens."""
    if isinstance(vocabulary, (str, os.PathLike)):
        if not os.path.isfile(vocabulary):
            raise ValueError(
                f"`vocabulary` file {os.fspath(vocabulary)!r} does not exist; pass "
                "the path of a BERT vocab.txt or a list of tokens."
            )
        with open(vocabulary, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        while tokens and not tokens[-1]:
            tokens.pop()
    elif isinstance(vocabulary, (list, tuple)):
        tokens = [str(token) for token in vocabulary]
    else:
        raise ValueError(
            "`vocabulary` must be a path to a vocab.txt or a list of tokens; "
            f"received {type(vocabulary).__name__}."
        )
    missing = [token for token in SPECIAL_TOKENS if token not in tokens]
    if missing:
        raise ValueError(
            f"The vocabulary lacks BERT's special tokens {missing}; BERT "
            f"vocabularies contain all of {list(SPECIAL_TOKENS)}."
        )
    return tokens


@keras.saving.register_keras_serializable(package="tfbert")
class BertTokenizer(keras.layers.Layer):
    """Raw strings to BERT inputs, in graph ops usable in tf.data and SavedModels.

    Word pieces come from tensorflow-text's `FastBertTokenizer`; one or two
    segments are packed as `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`,
    truncated round-robin (the longer segment loses tokens first), padded with
    `[PAD]` to `sequence_length`.

    Args:
        vocabulary: path of a BERT `vocab.txt`, or a list of tokens.
        sequence_length: int, default 128. Length of every packed output.
        lowercase: bool, default True. Lower-case and strip accents (for
            uncased vocabularies).

    Example:
        tokenizer = BertTokenizer("vocab.txt", sequence_length=16)
        batch = tokenizer(["a great film", "dull"])  # dict of (2, 16) int32
        pairs = tokenizer(["question?"], ["answer."])
    """

    def __init__(self, vocabulary, sequence_length: int = 128, lowercase: bool = True, **kwargs):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if not isinstance(sequence_length, int) or sequence_length < 3:
            raise ValueError(
                "`sequence_length` must be an integer >= 3 (room for [CLS], a "
                f"token and [SEP]); received sequence_length={sequence_length!r}."
            )
        self.vocabulary = load_vocabulary(vocabulary)
        self.sequence_length = sequence_length
        self.lowercase = lowercase
        ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_token_id = ids["[PAD]"]
        self.unk_token_id = ids["[UNK]"]
        self.cls_token_id = ids["[CLS]"]
        self.sep_token_id = ids["[SEP]"]
        self.mask_token_id = ids["[MASK]"]
        self._tokenizer = tf_text.FastBertTokenizer(
            vocab=self.vocabulary,
            token_out_type=tf.int32,
            unknown_token="[UNK]",
            support_detokenization=True,
            lower_case_nfd_strip_accents=lowercase,
        )
        self._packer = MultiSegmentPacker(
            sequence_length=sequence_length,
            start_value=self.cls_token_id,
            end_value=self.sep_token_id,
            pad_value=self.pad_token_id,
            truncate="round_robin",
            dtype="int32",
        )
        self.built = True  # no weights: the vocabulary is the whole state

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    @staticmethod
    def _as_strings(texts, name):
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts, (list, tuple, np.ndarray)):
            texts = tf.constant(np.asarray(texts, dtype=object).astype(str))
        texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string:
            raise ValueError(
                f"`{name}` must be strings (a list, NumPy array or tf.string "
                f"tensor); received dtype {texts.dtype.name}."
            )
        return texts

    def tokenize(self, texts):
        """Strings (B,) to a ragged (B, pieces) int32 tensor of word-piece ids."""
        return self._tokenizer.tokenize(self._as_strings(texts, "texts"))

    def detokenize(self, token_ids):
        """Word-piece ids back to strings (B,); [PAD], [CLS] and [SEP] are dropped."""
        if not isinstance(token_ids, tf.RaggedTensor):
            token_ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(token_ids, tf.int32))
        keep = (
            (token_ids != self.pad_token_id)
            & (token_ids != self.cls_token_id)
            & (token_ids != self.sep_token_id)
        )
        return self._tokenizer.detokenize(tf.ragged.boolean_mask(token_ids, keep))

    def call(self, texts, pairs=None):
        """Packs texts (and optional second segments) into model inputs.

        Args:
            texts: (B,) strings: a Python list, NumPy array or tf.string tensor.
            pairs: (B,) strings for the second segment, or None.

        Returns:
            {"token_ids", "segment_ids", "padding_mask"}, each (B, sequence_length)
            int32.
        """
        segments = [self.tokenize(texts)]
        if pairs is not None:
            segments.append(self.tokenize(pairs))
        token_ids, segment_ids = self._packer(tuple(segments))
        return {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": tf.cast(token_ids != self.pad_token_id, tf.int32),
        }

    def compute_output_spec(self, texts, pairs=None):
        spec = keras.KerasTensor((None, self.sequence_length), "int32")
        return {"token_ids": spec, "segment_ids": spec, "padding_mask": spec}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": self.vocabulary,
                "sequence_length": self.sequence_length,
                "lowercase": self.lowercase,
            }
        )
        return config
