"""BERT pretraining examples (masked LM + next sentence) as a tf.data pipeline.

Reads the google-research/bert text format: one sentence per line, a blank
line between documents. Sentence pairs are built once, in NumPy, following
create_pretraining_data.py of google-research/bert: segment A is a run of
sentences, segment B is the true continuation half of the time and a run from
another document otherwise. Unlike that script, a chunk holding a single
sentence becomes a true pair by splitting the sentence, so the two NSP
classes stay balanced (the script labels every such chunk random, about 60%
random on IMDB reviews). Masks are drawn anew for every batch (dynamic
masking, Liu et al. 2019) with keras-nlp's `MaskedLMMaskGenerator`: 80%
[MASK], 10% random token, 10% unchanged; [CLS], [SEP] and padding are never
masked.
"""

import os

import numpy as np
import tensorflow as tf
from keras_hub.layers import MaskedLMMaskGenerator

IS_NEXT, IS_RANDOM = 0, 1


def read_documents(files) -> list[list[str]]:
    """Documents (lists of sentences) from files in the BERT pretraining format."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    documents, current = [], []
    for path in files:
        if not os.path.isfile(path):
            raise ValueError(f"Pretraining text file {os.fspath(path)!r} does not exist.")
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    current.append(line)
                elif current:
                    documents.append(current)
                    current = []
        if current:
            documents.append(current)
            current = []
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


def _pack(instances, tokenizer, sequence_length):
    count = len(instances)
    token_ids = np.full((count, sequence_length), tokenizer.pad_token_id, np.int32)
    segment_ids = np.zeros((count, sequence_length), np.int32)
    labels = np.zeros((count,), np.int32)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for row, (tokens_a, tokens_b, label) in enumerate(instances):
        ids = [cls, *tokens_a, sep]
        if tokens_b:
            segment_ids[row, len(ids) : len(ids) + len(tokens_b) + 1] = 1
            ids += [*tokens_b, sep]
        token_ids[row, : len(ids)] = ids
        labels[row] = label
    return token_ids, segment_ids, labels


def pretraining_dataset(
    files,
    tokenizer,
    sequence_length: int,
    batch_size: int,
    masked_lm_probability: float = 0.15,
    max_predictions: int = 20,
    next_sentence: bool = True,
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
        short_sequence_probability: float, default 0.1.
        seed: int, default None. Fixes pair construction and shuffling.

    Returns:
        `tf.data.Dataset` of (x, y, sample_weight) in `BertPretrainer`'s batch
        format, int32 features of static shape.
    """
    if sequence_length < 5:
        raise ValueError(f"`sequence_length` must be at least 5; received {sequence_length}.")
    if not 0.0 < masked_lm_probability < 1.0:
        raise ValueError(
            f"`masked_lm_probability` must be in (0, 1); received {masked_lm_probability}."
        )
    rng = np.random.default_rng(seed)
    documents = _tokenize_documents(read_documents(files), tokenizer)
    special_tokens = 3 if next_sentence else 2
    instances = create_instances(
        documents,
        sequence_length - special_tokens,
        next_sentence,
        short_sequence_probability,
        rng,
    )
    if len(instances) < batch_size:
        raise ValueError(
            f"The text yields {len(instances)} examples, fewer than one batch of "
            f"{batch_size}; add text or lower `batch_size`."
        )
    token_ids, segment_ids, nsp_labels = _pack(instances, tokenizer, sequence_length)

    masker = MaskedLMMaskGenerator(
        vocabulary_size=tokenizer.vocabulary_size,
        mask_selection_rate=masked_lm_probability,
        mask_token_id=tokenizer.mask_token_id,
        mask_selection_length=max_predictions,
        unselectable_token_ids=[
            tokenizer.pad_token_id,
            tokenizer.cls_token_id,
            tokenizer.sep_token_id,
        ],
    )

    def mask(token_ids, segment_ids, nsp_labels):
        # Static (batch, max_predictions) shapes, as TPUs need.
        masked = {
            key: tf.ensure_shape(
                value, token_ids.shape if key == "token_ids" else (batch_size, max_predictions)
            )
            for key, value in masker(token_ids).items()
        }
        x = {
            "token_ids": tf.cast(masked["token_ids"], tf.int32),
            "segment_ids": segment_ids,
            "padding_mask": tf.cast(token_ids != tokenizer.pad_token_id, tf.int32),
            "mask_positions": tf.cast(masked["mask_positions"], tf.int32),
        }
        y = {"mlm_labels": tf.cast(masked["mask_ids"], tf.int32)}
        if next_sentence:
            y["nsp_labels"] = nsp_labels
        sample_weight = {"mlm_labels": tf.cast(masked["mask_weights"], tf.float32)}
        return x, y, sample_weight

    dataset = tf.data.Dataset.from_tensor_slices((token_ids, segment_ids, nsp_labels))
    dataset = dataset.shuffle(len(instances), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
