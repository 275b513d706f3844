"""BERT pretraining examples (masked LM + next sentence) as a tf.data pipeline.

Reads the google-research/bert text format: one sentence per line, a blank
line between documents. Sentence pairs are built once, in NumPy, following
create_pretraining_data.py of google-research/bert: segment A is a run of
sentences, segment B is the true continuation half of the time and a run from
another document otherwise. Unlike that script, a chunk holding a single
sentence becomes a true pair by splitting the sentence, so the two NSP
classes stay balanced (the script labels every such chunk random, about 60%
random on IMDB reviews). Masks (see `tfbert.text.masking`) are drawn anew
for every batch and epoch (dynamic masking, Liu et al. 2019) from seeds that
a fixed `seed` makes reproducible; `write_pretraining_tfrecords` stores
masked examples instead (static masking, as the original BERT) for corpora
larger than memory.
"""

import contextlib
import glob
import itertools
import json
import os
import re
import warnings

import numpy as np
import tensorflow as tf

from tfbert.files import atomic_path
from tfbert.text.bert_tokenizer import pack_segments
from tfbert.text.masking import MaskedLMMasker

IS_NEXT, IS_RANDOM = 0, 1
# What `errors="surrogateescape"` makes of bytes that are not UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")


def read_documents(files) -> list[list[str]]:
    """Documents (lists of sentences) from files in the BERT pretraining format.

    Files are UTF-8. Bytes that are not valid UTF-8 (common in scraped text)
    do not stop the run: each becomes U+FFFD, which `BertTokenizer` drops as
    it drops invalid bytes in its own input, and one warning per file names
    the file, how many lines held such bytes and the first of them. A file
    that warns for most of its lines is in another encoding: convert it
    (e.g. `iconv -f latin1 -t utf-8`).
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    documents, current = [], []
    for path in files:
        if not os.path.isfile(path):
            raise ValueError(f"Pretraining text file {os.fspath(path)!r} does not exist.")
        invalid, first_invalid, number = 0, None, 0
        # surrogateescape keeps each undecodable byte as a lone surrogate, to count.
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for number, line in enumerate(f, start=1):
                if _UNDECODED.search(line):
                    invalid += 1
                    first_invalid = first_invalid or number
                    line = _UNDECODED.sub("\ufffd", line)
                line = line.strip()
                if line:
                    current.append(line)
                elif current:
                    documents.append(current)
                    current = []
        if current:
            documents.append(current)
            current = []
        if invalid:
            warnings.warn(
                f"Pretraining text file {os.fspath(path)!r}: {invalid} of {number} lines "
                f"are not valid UTF-8 (the first is line {first_invalid}); their invalid "
                "bytes were read as U+FFFD, which the tokenizer drops. If the file is in "
                "another encoding, convert it to UTF-8 first.",
                UnicodeWarning,
                stacklevel=2,
            )
    return documents


def _tokenize_documents(documents, tokenizer, chunk_size=4096):
    sentences = [sentence for document in documents for sentence in document]
    pieces = []
    for start in range(0, len(sentences), chunk_size):
        pieces.extend(tokenizer.tokenize(sentences[start : start + chunk_size]).to_list())
    tokenized, position = [], 0
    for document in documents:
        tokenized_document = [p for p in pieces[position : position + len(document)] if p]
        position += len(document)
        if tokenized_document:
            tokenized.append(tokenized_document)
    return tokenized


def _truncate_pair(tokens_a, tokens_b, max_tokens, rng):
    """Trims the longer segment, from its front or back at random, until both fit."""
    while len(tokens_a) + len(tokens_b) > max_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def create_instances(documents, max_tokens, next_sentence, short_sequence_probability, rng):
    """(tokens_a, tokens_b, nsp_label) triples from tokenized documents.

    Args:
        documents: list of documents, each a list of sentences of token ids.
        max_tokens: room for both segments (sequence length minus special tokens).
        next_sentence: build A/B pairs with NSP labels; otherwise B is empty.
        short_sequence_probability: chance of targeting a random shorter length,
            so the model also sees short inputs.
        rng: `np.random.Generator`.
    """
    if next_sentence and len(documents) < 2:
        raise ValueError(
            "Next-sentence prediction needs at least 2 documents (separated by "
            f"a blank line) to draw random segments from; found {len(documents)}."
        )
    instances = []
    for doc_index, document in enumerate(documents):
        target_length = max_tokens
        if rng.random() < short_sequence_probability:
            target_length = int(rng.integers(2, max_tokens + 1))
        chunk, chunk_length, i = [], 0, 0
        while i < len(document):
            chunk.append(document[i])
            chunk_length += len(document[i])
            if i == len(document) - 1 or chunk_length >= target_length:
                tokens_b, label = [], IS_NEXT
                if not next_sentence:
                    tokens_a = [t for sentence in chunk for t in sentence]
                elif rng.random() < 0.5 or (len(chunk) == 1 and len(chunk[0]) < 2):
                    label = IS_RANDOM
                    a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
                    tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
                    other = doc_index
                    while other == doc_index:
                        other = int(rng.integers(0, len(documents)))
                    random_document = documents[other]
                    start = int(rng.integers(0, len(random_document)))
                    for sentence in random_document[start:]:
                        tokens_b.extend(sentence)
                        if len(tokens_b) >= target_length - len(tokens_a):
                            break
                    # The unused sentences of this chunk start the next one.
                    i -= len(chunk) - a_end
                elif len(chunk) >= 2:
                    a_end = int(rng.integers(1, len(chunk)))
                    tokens_a = [t for sentence in chunk[:a_end] for t in sentence]
                    tokens_b = [t for sentence in chunk[a_end:] for t in sentence]
                else:
                    # One sentence left: its two halves are a true next pair,
                    # which keeps the NSP classes balanced.
                    split = int(rng.integers(1, len(chunk[0])))
                    tokens_a, tokens_b = list(chunk[0][:split]), list(chunk[0][split:])
                if next_sentence:
                    _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
                else:
                    del tokens_a[max_tokens:]
                instances.append((tokens_a, tokens_b, label))
                chunk, chunk_length = [], 0
            i += 1
    return instances


def _ragged(rows):
    lengths = [len(row) for row in rows]
    values = np.fromiter(itertools.chain.from_iterable(rows), np.int32, sum(lengths))
    return tf.RaggedTensor.from_row_lengths(values, np.asarray(lengths, np.int64))


def _pack(instances, tokenizer, sequence_length, next_sentence):
    """(token_ids, segment_ids, nsp_labels) arrays of `[CLS] a [SEP] (b [SEP])` rows."""
    segments = [_ragged([tokens_a for tokens_a, _, _ in instances])]
    if next_sentence:
        segments.append(_ragged([tokens_b for _, tokens_b, _ in instances]))
    packed = pack_segments(
        segments,
        sequence_length,
        cls_id=tokenizer.cls_token_id,
        sep_id=tokenizer.sep_token_id,
        pad_id=tokenizer.pad_token_id,
    )
    labels = np.array([label for _, _, label in instances], np.int32)
    return packed["token_ids"].numpy(), packed["segment_ids"].numpy(), labels


def _check_arguments(sequence_length, batch_size=1):
    if not isinstance(sequence_length, int) or sequence_length < 5:
        raise ValueError(
            f"`sequence_length` must be an integer >= 5; received {sequence_length!r}."
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; received {batch_size!r}.")


def _pairs(files, tokenizer, sequence_length, next_sentence, short_sequence_probability, rng):
    """Packed (token_ids, segment_ids, nsp_labels) arrays from text files."""
    documents = _tokenize_documents(read_documents(files), tokenizer)
    instances = create_instances(
        documents,
        sequence_length - (3 if next_sentence else 2),
        next_sentence,
        short_sequence_probability,
        rng,
    )
    return _pack(instances, tokenizer, sequence_length, next_sentence)


def _features(masked, segment_ids, nsp_labels, pad_token_id, next_sentence):
    """(x, y, sample_weight) in `BertPretrainer`'s batch format."""
    x = {
        "token_ids": masked["token_ids"],
        "segment_ids": segment_ids,
        "padding_mask": tf.cast(masked["token_ids"] != pad_token_id, tf.int32),
        "mask_positions": masked["mask_positions"],
    }
    # Padding is never masked, so the padding mask is the same before and after.
    y = {"mlm_labels": masked["mask_ids"]}
    if next_sentence:
        y["nsp_labels"] = nsp_labels
    return x, y, {"mlm_labels": masked["mask_weights"]}


def _seeds(seed):
    """A dataset of stateless seeds: fixed for a fixed `seed`, new every epoch."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def pretraining_dataset(
    files,
    tokenizer,
    sequence_length: int,
    batch_size: int,
    masked_lm_probability: float = 0.15,
    max_predictions: int = 20,
    next_sentence: bool = True,
    whole_word_masking: bool = False,
    short_sequence_probability: float = 0.1,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A dataset of `BertPretrainer` batches from BERT-format text files.

    Args:
        files: path or list of paths; one sentence per line, blank line
            between documents.
        tokenizer: `tfbert.text.BertTokenizer` (its vocabulary and special ids).
        sequence_length: int. Length of every example.
        batch_size: int. Batches are full (drop_remainder), shapes static.
        masked_lm_probability: float, default 0.15. Share of tokens masked.
        max_predictions: int, default 20. Masked positions per example (P).
        next_sentence: bool, default True. Build NSP pairs and labels.
        whole_word_masking: bool, default False. Mask all pieces of a word
            together.
        short_sequence_probability: float, default 0.1.
        seed: int, default None. With a seed, pairs, order and masks are the
            same on every run (and differ from epoch to epoch); None draws
            them anew each run.

    Returns:
        `tf.data.Dataset` of (x, y, sample_weight) in `BertPretrainer`'s batch
        format, int32 features of static shape.
    """
    _check_arguments(sequence_length, batch_size)
    masker = MaskedLMMasker(tokenizer, masked_lm_probability, max_predictions, whole_word_masking)
    token_ids, segment_ids, nsp_labels = _pairs(
        files,
        tokenizer,
        sequence_length,
        next_sentence,
        short_sequence_probability,
        np.random.default_rng(seed),
    )
    if len(token_ids) < batch_size:
        raise ValueError(
            f"The text yields {len(token_ids)} examples, fewer than one batch of "
            f"{batch_size}; add text or lower `batch_size`."
        )

    def mask(batch, seed):
        token_ids, segment_ids, nsp_labels = batch
        masked = masker(token_ids, seed)
        return _features(masked, segment_ids, nsp_labels, tokenizer.pad_token_id, next_sentence)

    dataset = tf.data.Dataset.from_tensor_slices((token_ids, segment_ids, nsp_labels))
    dataset = dataset.shuffle(len(token_ids), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = tf.data.Dataset.zip(dataset, _seeds(seed))
    return dataset.map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


RECORD_FEATURES = (
    "token_ids",
    "segment_ids",
    "padding_mask",
    "mask_positions",
    "mlm_labels",
    "mlm_weights",
    "nsp_labels",
)


def _int_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _write_shards(
    files,
    shard_paths,
    tokenizer,
    masker,
    rng,
    sequence_length,
    dupe_factor,
    next_sentence,
    short_sequence_probability,
):
    """Writes masked examples round-robin to the shard files; returns their counts."""
    writers = [tf.io.TFRecordWriter(path) for path in shard_paths]
    count, shard_counts = 0, [0] * len(shard_paths)
    try:
        for path in files:
            token_ids, segment_ids, nsp_labels = _pairs(
                [path], tokenizer, sequence_length, next_sentence, short_sequence_probability, rng
            )
            for _ in range(dupe_factor):
                masked = masker(token_ids, rng.integers(0, 2**62, size=2))
                x, y, w = _features(
                    masked, segment_ids, nsp_labels, tokenizer.pad_token_id, next_sentence
                )
                columns = {
                    **{k: np.asarray(v) for k, v in x.items()},
                    "mlm_labels": np.asarray(y["mlm_labels"]),
                    "mlm_weights": np.asarray(w["mlm_labels"]).astype(np.int64),
                    "nsp_labels": nsp_labels[:, None],
                }
                for row in rng.permutation(len(token_ids)):
                    example = tf.train.Example(
                        features=tf.train.Features(
                            feature={
                                name: _int_feature(columns[name][row]) for name in RECORD_FEATURES
                            }
                        )
                    )
                    writers[count % len(writers)].write(example.SerializeToString())
                    shard_counts[count % len(writers)] += 1
                    count += 1
    finally:
        for writer in writers:
            writer.close()
    return shard_counts


def write_pretraining_tfrecords(
    files,
    tokenizer,
    output_dir,
    sequence_length: int = 128,
    num_shards: int = 4,
    dupe_factor: int = 1,
    masked_lm_probability: float = 0.15,
    max_predictions: int = 20,
    next_sentence: bool = True,
    whole_word_masking: bool = False,
    short_sequence_probability: float = 0.1,
    seed: int | None = None,
) -> list[str]:
    """Writes masked pretraining examples as sharded TFRecord files.

    Input files are processed one at a time (random NSP segments come from
    the same file), so memory holds one input file, never the corpus: split
    a large corpus into many files. Each example is masked `dupe_factor`
    times with different masks (static masking, as google-research/bert).
    Shards and `pretraining-info.json` are written under hidden staging
    names (`tfbert.files.atomic_path`) and renamed when all are complete, the
    info file last; a failure removes them, so a crash never leaves a
    half-written shard under a final name.

    Args:
        files: path or list of paths in the BERT pretraining text format.
        tokenizer: `tfbert.text.BertTokenizer`.
        output_dir: folder for `pretraining-XXXXX-of-YYYYY.tfrecord`; it must
            not hold shards already (nothing is overwritten).
        sequence_length, masked_lm_probability, max_predictions,
        next_sentence, whole_word_masking, short_sequence_probability, seed:
            as in `pretraining_dataset`.
        num_shards: int, default 4. Examples go round-robin to the shards.
        dupe_factor: int, default 1. Maskings of each example.

    Returns:
        The shard paths. `pretraining-info.json` beside them records the
        settings and the number of examples in each shard.
    """
    _check_arguments(sequence_length)
    for name, value in (("num_shards", num_shards), ("dupe_factor", dupe_factor)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer; received {value!r}.")
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    output_dir = os.fspath(output_dir)
    existing = glob.glob(os.path.join(output_dir, "pretraining-*.tfrecord*")) + glob.glob(
        os.path.join(output_dir, "pretraining-info.json")
    )
    if existing:
        raise FileExistsError(
            f"{output_dir!r} already holds pretraining shards or their info file "
            f"({len(existing)}, e.g. {os.path.basename(existing[0])!r}); choose a new "
            "folder or delete them first."
        )
    os.makedirs(output_dir, exist_ok=True)
    masker = MaskedLMMasker(tokenizer, masked_lm_probability, max_predictions, whole_word_masking)
    rng = np.random.default_rng(seed)
    paths = [
        os.path.join(output_dir, f"pretraining-{i:05d}-of-{num_shards:05d}.tfrecord")
        for i in range(num_shards)
    ]
    info = {
        "examples": 0,
        "sequence_length": sequence_length,
        "max_predictions": max_predictions,
        "next_sentence": next_sentence,
        "whole_word_masking": whole_word_masking,
        "dupe_factor": dupe_factor,
        "vocabulary_size": tokenizer.vocabulary_size,
        "shards": {},
    }
    with contextlib.ExitStack() as stack:
        # Entered first, so renamed last: the info file appears once every
        # shard is complete, and a failure removes every staged file.
        info_staging = stack.enter_context(
            atomic_path(os.path.join(output_dir, "pretraining-info.json"), overwrite=False)
        )
        stagings = [stack.enter_context(atomic_path(path, overwrite=False)) for path in paths]
        shard_counts = _write_shards(
            files,
            stagings,
            tokenizer,
            masker,
            rng,
            sequence_length,
            dupe_factor,
            next_sentence,
            short_sequence_probability,
        )
        info["examples"] = sum(shard_counts)
        info["shards"] = {
            os.path.basename(path): n for path, n in zip(paths, shard_counts, strict=True)
        }
        with open(info_staging, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
    return paths


def read_pretraining_tfrecords(
    files,
    batch_size: int,
    shuffle: bool = True,
    seed: int | None = None,
    next_sentence: bool = True,
) -> tf.data.Dataset:
    """Reads shards from `write_pretraining_tfrecords` as `BertPretrainer` batches.

    Args:
        files: a shard path, a glob pattern ("dir/pretraining-*.tfrecord") or
            a list of paths.
        batch_size: int. Batches are full (drop_remainder), shapes static.
        shuffle: bool, default True. Shuffle shard order and examples.
        seed: int, default None.
        next_sentence: bool, default True. Yield `nsp_labels`.

    Returns:
        The batch format of `pretraining_dataset`: (x, y, sample_weight),
        int32 features (float32 weights) of static shape. Its length is not
        known to tf.data: for a large corpus train with
        `fit(dataset.repeat(), steps_per_epoch=...)`, the example counts are
        in `pretraining-info.json`.
    """
    _check_arguments(5, batch_size)
    patterns = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    paths = sorted(p for pattern in patterns for p in glob.glob(os.fspath(pattern)))
    if not paths:
        raise ValueError(
            f"No TFRecord shards match {patterns}; write them with "
            "`write_pretraining_tfrecords` or check the path."
        )
    first = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(paths[0]))).numpy())
    lengths = {
        name: len(first.features.feature[name].int64_list.value) for name in RECORD_FEATURES
    }
    spec = {name: tf.io.FixedLenFeature([lengths[name]], tf.int64) for name in RECORD_FEATURES}

    def parse(records):
        features = tf.io.parse_example(records, spec)
        x = {
            name: tf.cast(features[name], tf.int32)
            for name in ("token_ids", "segment_ids", "padding_mask", "mask_positions")
        }
        y = {"mlm_labels": tf.cast(features["mlm_labels"], tf.int32)}
        if next_sentence:
            y["nsp_labels"] = tf.cast(features["nsp_labels"][:, 0], tf.int32)
        return x, y, {"mlm_labels": tf.cast(features["mlm_weights"], tf.float32)}

    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(paths), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=seed is not None,
    )
    if shuffle:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
