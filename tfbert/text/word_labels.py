"""Word-level labels (NER tags) on word pieces, and entity spans from BIO tags.

Datasets label words; BERT reads word pieces. `align_word_labels` puts each
word's label on its first piece and marks the other pieces, [CLS], [SEP] and
padding with `IGNORE_LABEL`, which the token classifier's loss skips.
`entity_scores` scores predictions as seqeval does by default: an entity is
a (type, first word, last word) span read from BIO tags, counted correct only
when predicted exactly; precision, recall and F1 are micro-averaged.
"""

import numpy as np

from tfbert.models.bert.bert_token_classifier import IGNORE_LABEL


def align_word_labels(tokenizer, sentences, labels=None, label_names=None):
    """Packs pre-split sentences for token classification.

    Args:
        tokenizer: `tfbert.text.BertTokenizer` (its `sequence_length` is used).
        sentences: list of sentences, each a list of words.
        labels: optional list of per-word labels (names or ids), like `sentences`.
        label_names: list of label names; needed when `labels` are names.

    Returns:
        (x, y, word_ids): x the tokenizer's dict of (B, T) int32 arrays; y (B, T)
        int32 labels on first pieces and `IGNORE_LABEL` elsewhere (None without
        `labels`); word_ids (B, T) int32, the word each piece belongs to, -1
        for special tokens and padding. Words cut off by `sequence_length`
        have no pieces.
    """
    if labels is not None and len(labels) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(labels)} label lists.")
    index = {name: i for i, name in enumerate(label_names or [])}
    length = tokenizer.sequence_length
    words = [word for sentence in sentences for word in sentence]
    pieces = tokenizer.tokenize(words).to_list() if words else []
    token_ids = np.full((len(sentences), length), tokenizer.pad_token_id, np.int32)
    y = np.full((len(sentences), length), IGNORE_LABEL, np.int32)
    word_ids = np.full((len(sentences), length), -1, np.int32)
    start = 0
    for row, sentence in enumerate(sentences):
        if labels is not None and len(labels[row]) != len(sentence):
            raise ValueError(
                f"Sentence {row} has {len(sentence)} words but {len(labels[row])} labels."
            )
        ids, position = [tokenizer.cls_token_id], 1
        for word, word_pieces in enumerate(pieces[start : start + len(sentence)]):
            if not word_pieces or position + len(word_pieces) > length - 1:
                if word_pieces:
                    break  # the rest does not fit
                continue  # nothing to read (e.g. only control characters)
            ids.extend(word_pieces)
            word_ids[row, position : position + len(word_pieces)] = word
            if labels is not None:
                label = labels[row][word]
                y[row, position] = index[label] if isinstance(label, str) else label
            position += len(word_pieces)
        start += len(sentence)
        ids.append(tokenizer.sep_token_id)
        token_ids[row, : len(ids)] = ids
    x = {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": (token_ids != tokenizer.pad_token_id).astype(np.int32),
    }
    return x, (y if labels is not None else None), word_ids


def word_predictions(logits, word_ids, sentences, label_names, outside="O"):
    """Per-word label names from piece logits (B, T, labels), read at first pieces.

    Words without pieces (cut off, or nothing readable) get `outside`.
    """
    predicted = np.asarray(logits).argmax(-1)
    tags = []
    for row, sentence in enumerate(sentences):
        sentence_tags = [outside] * len(sentence)
        seen = set()
        for position, word in enumerate(word_ids[row]):
            if word >= 0 and word not in seen:
                seen.add(word)
                sentence_tags[word] = label_names[predicted[row, position]]
        tags.append(sentence_tags)
    return tags


def entity_spans(tags) -> set[tuple[str, int, int]]:
    """(type, first, last) spans of one sentence's BIO tags.

    An entity starts at B-X, or at I-X that does not continue an X entity
    (seqeval's default, lenient IOB2 reading), and runs over the I-X after it.
    """
    spans, current = set(), None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and current is not None and current[0] == kind
        if current is not None and not continues:
            spans.add((current[0], current[1], i - 1))
            current = None
        if prefix in ("B", "I") and not continues:
            current = (kind, i)
    return spans


def entity_scores(true_tags, predicted_tags) -> dict:
    """Micro precision, recall and F1 of exactly matched entity spans, and counts."""
    correct = predicted = actual = 0
    for truth, guess in zip(true_tags, predicted_tags, strict=True):
        if len(truth) != len(guess):
            raise ValueError(f"A sentence has {len(truth)} true tags but {len(guess)} predicted.")
        true_spans, guessed = entity_spans(truth), entity_spans(guess)
        correct += len(true_spans & guessed)
        predicted += len(guessed)
        actual += len(true_spans)
    precision = correct / predicted if predicted else 0.0
    recall = correct / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "correct": correct,
        "predicted": predicted,
        "true": actual,
    }
