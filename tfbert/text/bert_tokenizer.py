"""BERT WordPiece tokenization and [CLS] a [SEP] b [SEP] packing as a Keras layer."""

import io
import json
import os

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfbert.text.normalization import normalize_text, split_words, valid_utf8

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_vocabulary(vocabulary) -> list[str]:
    """Reads a BERT `vocab.txt` (one token per line) or checks a list of tokens."""
    if isinstance(vocabulary, (str, os.PathLike)):
        if not os.path.isfile(vocabulary):
            raise ValueError(
                f"`vocabulary` file {os.fspath(vocabulary)!r} does not exist; pass "
                "the path of a BERT vocab.txt or a list of tokens."
            )
        tokens = _read_vocabulary_file(os.fspath(vocabulary))
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


def _read_vocabulary_file(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        number = data.count(b"\n", 0, error.start) + 1
        line = data[data.rfind(b"\n", 0, error.start) + 1 :].split(b"\n", 1)[0]
        raise ValueError(
            f"Vocabulary file {path!r} is not UTF-8 text: line {number} ({line[:60]!r}) "
            f"has a byte that is not UTF-8 ({error.reason}). The file is damaged or in "
            "another encoding; re-download it or re-save it as UTF-8."
        ) from None
    # Lines end as in Python's (and Hugging Face's) reading of text files: \n, \r\n or \r.
    return [line.rstrip("\n") for line in io.StringIO(text, newline=None)]


def _read_json(path):
    """A tokenizer JSON file of a checkpoint folder, or an error naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); the file is damaged or incomplete. "
            "Re-download the checkpoint, or delete the file (the casing is then "
            "read from the folder's other files)."
        ) from None
    if not isinstance(content, dict):
        raise ValueError(
            f"{path} holds a JSON {type(content).__name__}, not an object; "
            "re-download the checkpoint or delete the file."
        )
    return content


def checkpoint_casing(directory: str, vocabulary: list[str]) -> tuple[bool, bool | None]:
    """(lowercase, strip_accents) declared by a BERT checkpoint directory.

    Reads Hugging Face's `tokenizer_config.json` (`do_lower_case`,
    `strip_accents`), else the normalizer in `tokenizer.json`. Google's
    checkpoints declare no casing, so it is read from the vocabulary: a cased
    vocabulary holds upper-case tokens ("The"), an uncased one none.
    """
    config_file = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(config_file):
        config = _read_json(config_file)
        if "do_lower_case" in config:
            return bool(config["do_lower_case"]), config.get("strip_accents")
    tokenizer_file = os.path.join(directory, "tokenizer.json")
    if os.path.isfile(tokenizer_file):
        normalizer = _read_json(tokenizer_file).get("normalizer") or {}
        if normalizer.get("type") == "BertNormalizer":
            return bool(normalizer.get("lowercase", True)), normalizer.get("strip_accents")
    cased = any(token != token.lower() for token in vocabulary if token[:1] not in ("[", "<"))
    return not cased, None


def kept_lengths(lengths, budget):
    """How many tokens each of one or two segments keeps (element-wise over
    length tensors) so that together they fit in `budget` tokens.

    The shorter segment stays whole if it fits in half the budget;
    otherwise both get half, the second one the odd token.
    """
    if len(lengths) == 1:
        return [tf.minimum(lengths[0], budget)]
    first, second = lengths
    shorter = tf.minimum(first, second)
    short_keep = tf.where(2 * shorter <= budget, shorter, budget // 2)
    long_keep = budget - short_keep
    fits = first + second <= budget
    first_longer = first > second
    return [
        tf.where(fits, first, tf.where(first_longer, long_keep, short_keep)),
        tf.where(fits, second, tf.where(first_longer, short_keep, long_keep)),
    ]


def pack_segments(segments, sequence_length: int, *, cls_id: int, sep_id: int, pad_id: int):
    """BERT's input layout: `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, padded.

    The one definition of the layout, shared by `BertTokenizer` (ragged
    batches), the LiteRT tokenizer-inside graph (one dense example) and the
    pretraining data. Segment ids are 0 for [CLS], `a` and its [SEP], 1 for
    `b` and its [SEP], and 0 on padding. Core TensorFlow ops only (concat,
    fill, pad), so TF Serving and LiteRT's builtin ops run it (keras-hub's
    `MultiSegmentPacker` adds tensorflow-text's RoundRobinTrim, newer than
    TF Serving's).

    Args:
        segments: one or two int32 tensors of shape (B, pieces), ragged or
            dense, already cut to fit (see `kept_lengths`): together at most
            `sequence_length - 1 - len(segments)` ids per row.
        sequence_length: int. Length of every packed row.
        cls_id, sep_id, pad_id: ids of [CLS], [SEP] and [PAD].

    Returns:
        {"token_ids", "segment_ids", "padding_mask"}: dense (B, sequence_length)
        int32 tensors.
    """
    ragged = isinstance(segments[0], tf.RaggedTensor)
    rows = segments[0].shape[0]
    if rows is None:
        rows = segments[0].nrows() if ragged else tf.shape(segments[0])[0]
    cls = tf.fill([rows, 1], tf.constant(cls_id, tf.int32))
    sep = tf.fill([rows, 1], tf.constant(sep_id, tf.int32))
    pieces, kinds = [cls], [tf.zeros_like(cls)]
    for index, segment in enumerate(segments):
        pieces += [segment, sep]
        kinds += [tf.zeros_like(segment) + index, tf.zeros_like(sep) + index]
    token_ids, segment_ids = tf.concat(pieces, axis=1), tf.concat(kinds, axis=1)
    if ragged:
        shape = [None, sequence_length]
        token_ids = token_ids.to_tensor(pad_id, shape=shape)
        segment_ids = segment_ids.to_tensor(0, shape=shape)
    else:
        padding = [[0, 0], [0, sequence_length - tf.shape(token_ids)[1]]]
        shape = [-1 if isinstance(rows, tf.Tensor) else rows, sequence_length]
        token_ids = tf.reshape(tf.pad(token_ids, padding, constant_values=pad_id), shape)
        segment_ids = tf.reshape(tf.pad(segment_ids, padding), shape)
    return {
        "token_ids": token_ids,
        "segment_ids": segment_ids,
        "padding_mask": tf.cast(token_ids != pad_id, tf.int32),
    }


@keras.saving.register_keras_serializable(package="tfbert")
class BertTokenizer(keras.layers.Layer):
    """Raw strings to BERT inputs, in graph ops usable in tf.data and SavedModels.

    Text is normalized and split into words exactly as BERT's reference
    tokenizer does it (see `tfbert.text.normalization`), then cut into word
    pieces by tensorflow-text's `FastWordpieceTokenizer`: greedy longest match,
    "##" continuation pieces, `[UNK]` for a word with no pieces or longer than
    `max_word_length` characters. One or two segments are packed as
    `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`; when they do not fit, the
    longer segment loses tokens first, and on a tie the two segments keep
    `budget // 2` and `budget - budget // 2` tokens (as Hugging Face's
    "longest_first"). Outputs are padded with `[PAD]` to `sequence_length`.

    Args:
        vocabulary: path of a BERT `vocab.txt`, or a list of tokens.
        sequence_length: int, default 128. Length of every packed output.
        lowercase: bool, default True. Lower-case the text (uncased
            vocabularies).
        strip_accents: bool or None. None (default) strips accents exactly
            when `lowercase` is set.
        special_tokens_in_strings: bool, default False. When True, the
            literal strings "[CLS]", "[SEP]", "[MASK]", "[PAD]" and "[UNK]" in
            the text become those tokens (as Hugging Face tokenizers do);
            when False, they are ordinary text, so user text cannot inject a
            separator.
        max_word_length: int, default 100. Longer words become `[UNK]`.

    Example:
        tokenizer = BertTokenizer("vocab.txt", sequence_length=16)
        batch = tokenizer(["a great film", "dull"])  # dict of (2, 16) int32
        pairs = tokenizer(["question?"], ["answer."])
    """

    def __init__(
        self,
        vocabulary,
        sequence_length: int = 128,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        special_tokens_in_strings: bool = False,
        max_word_length: int = 100,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if not isinstance(sequence_length, int) or sequence_length < 3:
            raise ValueError(
                "`sequence_length` must be an integer >= 3 (room for [CLS], a "
                f"token and [SEP]); received sequence_length={sequence_length!r}."
            )
        if not isinstance(max_word_length, int) or max_word_length < 1:
            raise ValueError(
                f"`max_word_length` must be a positive integer; received {max_word_length!r}."
            )
        self.vocabulary = load_vocabulary(vocabulary)
        self.sequence_length = sequence_length
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.special_tokens_in_strings = special_tokens_in_strings
        self.max_word_length = max_word_length
        ids = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_token_id = ids["[PAD]"]
        self.unk_token_id = ids["[UNK]"]
        self.cls_token_id = ids["[CLS]"]
        self.sep_token_id = ids["[SEP]"]
        self.mask_token_id = ids["[MASK]"]
        self.special_token_ids = sorted(ids[token] for token in SPECIAL_TOKENS)
        self._special_pattern = "|".join(
            token.replace("[", r"\[").replace("]", r"\]") for token in SPECIAL_TOKENS
        )
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocabulary,
            suffix_indicator="##",
            # Words are limited in characters below; UTF-8 needs up to 4 bytes each.
            max_bytes_per_word=4 * max_word_length,
            token_out_type=tf.int32,
            unknown_token="[UNK]",
            no_pretokenization=True,
            support_detokenization=True,
        )
        self.built = True  # no weights: the vocabulary is the whole state

    @classmethod
    def from_checkpoint(cls, directory, **kwargs):
        """A tokenizer for a Hugging Face or google-research/bert checkpoint folder.

        Reads `vocab.txt` and the casing the checkpoint declares (see
        `checkpoint_casing`); keyword arguments (`sequence_length`, or an
        explicit `lowercase`) are passed on and win over the folder.
        """
        directory = os.fspath(directory)
        vocabulary_file = os.path.join(directory, "vocab.txt")
        if not os.path.isfile(vocabulary_file):
            found = sorted(os.listdir(directory)) if os.path.isdir(directory) else None
            raise ValueError(
                f"No vocab.txt in {directory!r} (found: {found}); pass a Hugging Face "
                "or google-research/bert checkpoint folder, or build the tokenizer "
                "from a vocabulary with `BertTokenizer(vocabulary)`."
            )
        vocabulary = load_vocabulary(vocabulary_file)
        lowercase, strip_accents = checkpoint_casing(directory, vocabulary)
        kwargs.setdefault("lowercase", lowercase)
        kwargs.setdefault("strip_accents", strip_accents)
        return cls(vocabulary, **kwargs)

    def save_checkpoint(self, directory) -> None:
        """Writes `vocab.txt` and a Hugging Face `tokenizer_config.json` into a folder.

        `from_checkpoint` (and Hugging Face's `BertTokenizerFast`) read them
        back; existing files are never overwritten.
        """
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": True,
            "model_max_length": self.sequence_length,
            **{
                f"{name}_token": f"[{name.upper()}]"
                for name in ("unk", "sep", "pad", "cls", "mask")
            },
        }
        files = {
            "vocab.txt": "\n".join(self.vocabulary) + "\n",
            "tokenizer_config.json": json.dumps(config, indent=2),
        }
        for name, text in files.items():
            with open(os.path.join(directory, name), "x", encoding="utf-8") as f:
                f.write(text)

    def with_sequence_length(self, sequence_length: int) -> "BertTokenizer":
        """The same tokenizer packing to `sequence_length` (e.g. an export's
        fixed length); itself when the length is already that."""
        if sequence_length == self.sequence_length:
            return self
        return type(self).from_config({**self.get_config(), "sequence_length": sequence_length})

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    @staticmethod
    def _as_strings(texts, name):
        """(batch of strings (B,), whether the input was one unbatched string)."""
        if texts is None:
            raise ValueError(
                f"`{name}` is None; pass one string or a batch of strings (a list, "
                "NumPy array or tf.string tensor)."
                + (" Only `pairs` may be None (no second segments)." if name == "texts" else "")
            )
        if isinstance(texts, (str, bytes)):
            texts = tf.constant(texts.encode("utf-8") if isinstance(texts, str) else texts)
        if isinstance(texts, (list, tuple, np.ndarray)):
            items = np.asarray(texts, dtype=object).ravel().tolist()
            if not all(isinstance(item, (str, bytes)) for item in items):
                kinds = sorted(
                    {type(item).__name__ for item in items if not isinstance(item, (str, bytes))}
                )
                raise ValueError(f"`{name}` must be strings; received items of type {kinds}.")
            # Encoded one by one: NumPy's fixed-width strings would cut at a NUL.
            encoded = [item if isinstance(item, bytes) else item.encode("utf-8") for item in items]
            texts = tf.reshape(tf.constant(encoded, tf.string), np.shape(texts))
        texts = tf.convert_to_tensor(texts)
        if texts.dtype != tf.string:
            raise ValueError(
                f"`{name}` must be strings (a list, NumPy array or tf.string "
                f"tensor); received dtype {texts.dtype.name}."
            )
        if texts.shape.rank == 0:
            return texts[None], True
        if texts.shape.rank != 1:
            raise ValueError(
                f"`{name}` must be one string or a batch of strings of shape (batch,); "
                f"received shape {texts.shape}. Flatten it first."
            )
        return texts, False

    def split_words(self, texts):
        """Strings (B,) to normalized words (B, words) as a ragged tf.string tensor.

        One unbatched string gives its words (words,); so for every method.
        """
        texts, scalar = self._as_strings(texts, "texts")
        words = self._split_words(texts)
        return words[0] if scalar else words

    def _split_words(self, texts):
        if not self.special_tokens_in_strings:
            return split_words(normalize_text(texts, self.lowercase, self.strip_accents))
        # Special tokens are found in the raw text, before normalization.
        parts = tf_text.regex_split(
            valid_utf8(texts), self._special_pattern, self._special_pattern
        )
        flat = parts.flat_values
        is_special = tf.strings.regex_full_match(flat, self._special_pattern)
        words = split_words(normalize_text(flat, self.lowercase, self.strip_accents))
        words = tf.ragged.boolean_mask(words, tf.ones_like(words, tf.bool) & ~is_special[:, None])
        special = tf.RaggedTensor.from_row_lengths(
            tf.boolean_mask(flat, is_special), tf.cast(is_special, tf.int64)
        )
        words = tf.concat([words, special], axis=1)
        return parts.with_flat_values(words).merge_dims(1, 2)

    def _tokenize_words(self, texts):
        words = self._split_words(texts)
        too_long = tf.strings.length(words, unit="UTF8_CHAR") > self.max_word_length
        words = tf.where(too_long, "[UNK]", words)
        return self._wordpiece.tokenize(words)

    def tokenize_words(self, texts):
        """Strings (B,) to word-piece ids per word, ragged (B, words, pieces) int32."""
        texts, scalar = self._as_strings(texts, "texts")
        pieces = self._tokenize_words(texts)
        return pieces[0] if scalar else pieces

    def tokenize(self, texts):
        """Strings (B,) to a ragged (B, pieces) int32 tensor of word-piece ids."""
        texts, scalar = self._as_strings(texts, "texts")
        pieces = self._tokenize_words(texts).merge_dims(1, 2)
        return pieces[0] if scalar else pieces

    def detokenize(self, token_ids):
        """Word-piece ids back to strings (B,); [PAD], [CLS] and [SEP] are dropped."""
        if not isinstance(token_ids, tf.RaggedTensor):
            token_ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(token_ids, tf.int32))
        keep = (
            (token_ids != self.pad_token_id)
            & (token_ids != self.cls_token_id)
            & (token_ids != self.sep_token_id)
        )
        return self._wordpiece.detokenize(tf.ragged.boolean_mask(token_ids, keep))

    def _truncate(self, segments):
        """Trims segments to fit with their special tokens, longest first."""
        lengths = [segment.row_lengths() for segment in segments]
        keep = kept_lengths(lengths, self.sequence_length - 1 - len(segments))
        return [
            tf.ragged.boolean_mask(segment, tf.ragged.range(length) < limit[:, None])
            for segment, length, limit in zip(segments, lengths, keep, strict=True)
        ]

    def call(self, texts, pairs=None):
        """Packs texts (and optional second segments) into model inputs.

        Args:
            texts: (B,) strings: a Python list, NumPy array or tf.string tensor;
                or one string (e.g. mapping an unbatched dataset).
            pairs: second segments, shaped like `texts`, or None.

        Returns:
            {"token_ids", "segment_ids", "padding_mask"}, each (B, sequence_length)
            int32, or (sequence_length,) for one string.
        """
        texts, scalar = self._as_strings(texts, "texts")
        segments = [self._tokenize_words(texts).merge_dims(1, 2)]
        if pairs is not None:
            pairs, pairs_scalar = self._as_strings(pairs, "pairs")
            if pairs_scalar != scalar:
                raise ValueError(
                    "`texts` and `pairs` must both be single strings or both batches; "
                    f"received shapes {texts.shape[1:] if scalar else texts.shape} and "
                    f"{pairs.shape[1:] if pairs_scalar else pairs.shape}."
                )
            pairs = self._same_batch_size(texts, pairs)
            segments.append(self._tokenize_words(pairs).merge_dims(1, 2))
        outputs = pack_segments(
            self._truncate(segments),
            self.sequence_length,
            cls_id=self.cls_token_id,
            sep_id=self.sep_token_id,
            pad_id=self.pad_token_id,
        )
        return {key: value[0] for key, value in outputs.items()} if scalar else outputs

    @staticmethod
    def _same_batch_size(texts, pairs):
        """`pairs`, checked to hold one second segment per text."""
        fix = (
            "pass one second segment per text, in the same order, or pairs=None for "
            "single segments."
        )
        count, pair_count = texts.shape[0], pairs.shape[0]
        if count is not None and pair_count is not None:
            if count != pair_count:
                raise ValueError(
                    f"`texts` and `pairs` must hold as many strings; received {count} "
                    f"texts and {pair_count} pairs: {fix}"
                )
            return pairs
        # Sizes known only when the graph runs (a tf.function or SavedModel).
        check = tf.debugging.assert_equal(
            tf.shape(texts)[0],
            tf.shape(pairs)[0],
            message=f"`texts` and `pairs` must hold as many strings: {fix}",
        )
        with tf.control_dependencies([check]):
            return tf.identity(pairs)

    def compute_output_spec(self, texts, pairs=None):
        shape = (self.sequence_length,) if len(texts.shape) == 0 else (None, self.sequence_length)
        # One KerasTensor per output: a functional model tells its outputs apart
        # by tensor, so a shared one would give every key the same values.
        return {
            name: keras.KerasTensor(shape, "int32")
            for name in ("token_ids", "segment_ids", "padding_mask")
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": self.vocabulary,
                "sequence_length": self.sequence_length,
                "lowercase": self.lowercase,
                "strip_accents": self.strip_accents,
                "special_tokens_in_strings": self.special_tokens_in_strings,
                "max_word_length": self.max_word_length,
            }
        )
        return config
