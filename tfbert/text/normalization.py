"""BERT's text normalization and word splitting, in TensorFlow graph ops.

The steps are those of BERT's basic tokenizer, in the order Hugging Face's
`BertNormalizer` and `BertPreTokenizer` apply them:

1. drop control, format and private-use characters (and U+FFFD, which also
   stands in for invalid UTF-8); map every kind of whitespace to a space;
2. put spaces around CJK ideographs, so each becomes a word;
3. with `strip_accents`: decompose (NFD) and drop non-spacing marks;
4. with `lowercase`: map each character to its lower case (one character at
   a time, so a final Greek sigma stays σ);
5. split words at spaces and around every punctuation character.

Character classes come from `unicode_tables`, read out of the reference
tokenizer, so the result does not depend on the Unicode version of RE2 or
ICU. Full-width forms (，！Ａ) are kept, as BERT keeps them; NFKC folding
would merge them with ASCII and change the ids.
"""

import tensorflow as tf
import tensorflow_text as tf_text

from tfbert.text import unicode_tables


def _character_class(ranges) -> str:
    """An RE2 character class matching the inclusive code-point ranges."""
    parts = [
        f"\\x{{{first:X}}}" if first == last else f"\\x{{{first:X}}}-\\x{{{last:X}}}"
        for first, last in ranges
    ]
    return "[" + "".join(parts) + "]"


_CONTROL = _character_class(unicode_tables.CONTROL)
_WHITESPACE = _character_class(unicode_tables.WHITESPACE)
_CJK = "(" + _character_class(unicode_tables.CJK) + ")"
_NONSPACING_MARKS = _character_class(unicode_tables.NONSPACING_MARKS)
_PUNCTUATION = "(" + _character_class(unicode_tables.PUNCTUATION) + ")"
_UPPER = [upper for upper, _ in unicode_tables.LOWERCASE]
_LOWER = [lower for _, lower in unicode_tables.LOWERCASE]


def _lowercase_unicode(texts):
    for upper, lower in unicode_tables.LOWERCASE_MULTIPLE.items():
        texts = tf.strings.regex_replace(
            texts, f"\\x{{{upper:X}}}", "".join(chr(c) for c in lower)
        )
    code_points = tf.strings.unicode_decode(texts, "UTF-8")
    values = code_points.flat_values
    upper = tf.constant(_UPPER, tf.int32)
    index = tf.minimum(tf.searchsorted(upper, values), len(_UPPER) - 1)
    lowered = tf.where(tf.gather(upper, index) == values, tf.gather(_LOWER, index), values)
    return tf.strings.unicode_encode(code_points.with_flat_values(lowered), "UTF-8")


def _lowercase(texts):
    """Per-character lower case; ASCII-only strings take a fast byte-wise path."""
    shape = tf.shape(texts)
    texts = tf.reshape(texts, [-1])
    is_ascii = tf.cast(tf.strings.regex_full_match(texts, "[\\x00-\\x7F]*"), tf.int32)
    unicode_texts, ascii_texts = tf.dynamic_partition(texts, is_ascii, 2)
    positions = tf.dynamic_partition(tf.range(tf.size(texts)), is_ascii, 2)
    lowered = [_lowercase_unicode(unicode_texts), tf.strings.lower(ascii_texts)]
    return tf.reshape(tf.dynamic_stitch(positions, lowered), shape)


def valid_utf8(texts):
    """Replaces invalid UTF-8 and NUL (which some text ops end strings at) by U+FFFD.

    Both are then removed with the other control characters.
    """
    texts = tf.strings.unicode_transcode(
        texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
    )
    return tf.strings.regex_replace(texts, "\\x00", "\ufffd")


def normalize_text(texts, lowercase: bool = True, strip_accents: bool | None = None):
    """BERT-normalizes a string tensor of any shape (steps 1-4 above).

    Args:
        texts: tf.string tensor.
        lowercase: bool, default True.
        strip_accents: bool or None (default): None strips accents exactly
            when `lowercase` is set, as BERT's uncased models expect.
    """
    if strip_accents is None:
        strip_accents = lowercase
    texts = tf.strings.regex_replace(valid_utf8(texts), _CONTROL, "")
    texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
    texts = tf.strings.regex_replace(texts, _CJK, r" \1 ")
    if strip_accents:
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, _NONSPACING_MARKS, "")
    if lowercase:
        texts = _lowercase(texts)
    return texts


def split_words(normalized_texts):
    """Splits normalized strings (B,) into words (B, words) at spaces and punctuation."""
    spaced = tf.strings.regex_replace(normalized_texts, _PUNCTUATION, r" \1 ")
    return tf.strings.split(spaced)
