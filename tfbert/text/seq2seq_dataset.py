"""Sequence-to-sequence batches for `Transformer.fit`: tokenized, bucketed by token count.

A pair (source string, target string) becomes
    source:   pieces[: max_source_length - 1] + [SEP]
    decoder:  [CLS] + target pieces[: max_target_length - 1]
    labels:   target pieces[: max_target_length - 1] + [SEP]
with the Transformer's defaults ([CLS] = start, [SEP] = end, [PAD] = 0).
Pairs of similar length are batched together and each batch holds about
`tokens_per_batch` tokens (Vaswani et al. batch by tokens, not sentences),
so short sentences are not padded to the longest one in the data.
"""

import warnings

import tensorflow as tf

from tfbert.text.bert_tokenizer import BertTokenizer
from tfbert.text.vocabulary import build_vocabulary


def seq2seq_tokenizer(pairs, vocabulary_size: int, lowercase: bool = False) -> BertTokenizer:
    """A WordPiece tokenizer learned on both sides of training pairs (one shared
    vocabulary, case and accents kept unless `lowercase`)."""
    texts = [text for pair in pairs for text in pair]
    vocabulary = build_vocabulary(
        texts, vocabulary_size, lowercase=lowercase, strip_accents=lowercase
    )
    return BertTokenizer(vocabulary, lowercase=lowercase, strip_accents=lowercase)


def encode_sources(tokenizer: BertTokenizer, pieces, max_source_length: int):
    """Ragged source pieces (B, pieces) -> ragged ids cut to fit, [SEP] appended.

    The one place sources are shaped, for training batches and for
    translation alike. Returns (ids, number of sources that were cut).
    """
    kept = pieces[:, : max_source_length - 1]
    end = tf.fill([kept.nrows(), 1], tf.constant(tokenizer.sep_token_id, kept.dtype))
    cut = tf.reduce_sum(tf.cast(pieces.row_lengths() > max_source_length - 1, tf.int32))
    return tf.concat([kept, end], axis=1), cut


def default_buckets(max_length: int) -> list[int]:
    """Bucket lengths 8, 16, 24, 32, 48, 64, 96, 128, ... up to `max_length`."""
    lengths, step = [], 8
    length = 8
    while length < max_length:
        lengths.append(length)
        if length >= 4 * step:
            step *= 2
        length += step
    return lengths + [max_length]


def _check_lengths(max_source_length, max_target_length, tokens_per_batch, buckets) -> list:
    """The bucket lengths (default or given), once every size is checked."""
    for name, value, least in (
        ("max_source_length", max_source_length, 2),
        ("max_target_length", max_target_length, 2),
        ("tokens_per_batch", tokens_per_batch, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"`{name}` must be an integer >= {least}; received {value!r}.")
    longest = max(max_source_length, max_target_length)
    buckets = default_buckets(longest) if buckets is None else list(buckets)
    if buckets != sorted(set(buckets)) or not buckets or buckets[-1] != longest:
        raise ValueError(
            "`bucket_lengths` must be increasing and end at max(max_source_length, "
            f"max_target_length) = {longest}; received {list(buckets)}."
        )
    if tokens_per_batch < longest:
        raise ValueError(
            f"`tokens_per_batch` ({tokens_per_batch}) must hold at least one sequence of "
            f"the longest bucket ({longest} tokens)."
        )
    return buckets


def _pair_texts(pairs):
    """(sources, targets) string tensors from a list of pairs."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("`pairs` is empty; pass (source, target) string pairs.")
    bad = [i for i, pair in enumerate(pairs[:1000]) if len(pair) != 2]
    if bad:
        raise ValueError(
            f"`pairs` must hold (source, target) string pairs; item {bad[0]} is {pairs[bad[0]]!r}."
        )
    sources, targets = zip(*pairs, strict=True)
    return (
        BertTokenizer._as_strings(list(sources), "sources")[0],
        BertTokenizer._as_strings(list(targets), "targets")[0],
    )


def seq2seq_dataset(
    pairs,
    tokenizer: BertTokenizer,
    max_source_length: int = 128,
    max_target_length: int = 128,
    tokens_per_batch: int = 4096,
    bucket_lengths=None,
    shuffle: bool = True,
    seed: int = 0,
    static_shapes: bool = False,
) -> tf.data.Dataset:
    """Batches of ({encoder_token_ids, encoder_padding_mask, decoder_token_ids,
    decoder_padding_mask}, labels) for `Transformer.fit`, all int32.

    Args:
        pairs: a list of (source, target) strings, or a `tf.data.Dataset` of
            (source, target) string scalars.
        tokenizer: a `BertTokenizer` shared by both sides (see
            `seq2seq_tokenizer`).
        max_source_length, max_target_length: ints, default 128. Longer
            sides are cut; for a list of pairs a warning says how many.
        tokens_per_batch: int, default 4096. Each batch holds
            `tokens_per_batch // bucket_length` pairs.
        bucket_lengths: increasing ints ending at the longer maximum; a pair
            goes to the first bucket that holds both its sides. Default:
            `default_buckets`.
        shuffle: bool, default True (re-shuffled every epoch).
        seed: int, default 0. The shuffle order.
        static_shapes: bool, default False. True pads every batch to its
            bucket's length and drops incomplete batches, so each batch has
            one of `len(bucket_lengths)` fully known shapes (XLA on TPU
            compiles one program per bucket). False pads to the longest
            sequence in each batch.
    """
    buckets = _check_lengths(
        max_source_length, max_target_length, tokens_per_batch, bucket_lengths
    )
    if not isinstance(tokenizer, BertTokenizer):
        raise ValueError(
            f"`tokenizer` must be a tfbert BertTokenizer; received {type(tokenizer).__name__}."
        )

    def encode(sources, targets):
        source_ids, cut_sources = encode_sources(
            tokenizer, tokenizer.tokenize(sources), max_source_length
        )
        target_pieces = tokenizer.tokenize(targets)
        kept = target_pieces[:, : max_target_length - 1]
        start = tf.fill([kept.nrows(), 1], tokenizer.cls_token_id)
        end = tf.fill([kept.nrows(), 1], tokenizer.sep_token_id)
        cut_targets = tf.reduce_sum(
            tf.cast(target_pieces.row_lengths() > max_target_length - 1, tf.int32)
        )
        columns = (source_ids, tf.concat([start, kept], 1), tf.concat([kept, end], 1))
        return columns, cut_sources, cut_targets

    if isinstance(pairs, tf.data.Dataset):
        dataset = (
            pairs.batch(256)
            .map(lambda s, t: encode(s, t)[0], num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch()
        )
        size = 10_000
    else:
        columns, cut_sources, cut_targets = encode(*_pair_texts(pairs))
        size = int(columns[0].nrows())
        for side, count, limit in (
            ("sources", int(cut_sources), max_source_length),
            ("targets", int(cut_targets), max_target_length),
        ):
            if count:
                warnings.warn(
                    f"{count} of {size} {side} are longer than {limit} tokens with their "
                    f"special token and were cut; raise max_{side[:-1]}_length to keep them.",
                    stacklevel=2,
                )
        dataset = tf.data.Dataset.from_tensor_slices(columns)
    # Rows of ragged tensors come out as ragged specs of rank 0, which
    # `padded_batch` refuses; passing them through a map makes them tensors.
    dataset = dataset.map(lambda *columns: columns)
    if shuffle:
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.bucket_by_sequence_length(
        lambda source, decoder, labels: tf.maximum(tf.size(source), tf.size(labels)),
        bucket_boundaries=[length + 1 for length in buckets],
        bucket_batch_sizes=[tokens_per_batch // length for length in buckets]
        + [tokens_per_batch // buckets[-1]],  # longer pairs never come: they were cut
        padding_values=tokenizer.pad_token_id,
        pad_to_bucket_boundary=static_shapes,
        drop_remainder=static_shapes,
    )

    def to_inputs(source, decoder, labels):
        pad = tokenizer.pad_token_id
        inputs = {
            "encoder_token_ids": source,
            "encoder_padding_mask": tf.cast(source != pad, tf.int32),
            "decoder_token_ids": decoder,
            "decoder_padding_mask": tf.cast(decoder != pad, tf.int32),
        }
        return inputs, labels

    return dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
