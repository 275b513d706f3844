"""Extractive question answering data: windows over long contexts, span decoding, SQuAD scores.

Contexts are split at whitespace into words, as google-research/bert's
run_squad.py does, so answers are returned as spans of the original text.
A context longer than one sequence is read in overlapping windows
(`doc_stride` pieces apart); a piece's prediction counts only in the window
where it has the most context on both sides. Questions without an answer in a
window point at [CLS] (position 0), as in SQuAD 2.0 training.
"""

import collections
import re
import string

import numpy as np

QAFeatures = collections.namedtuple(
    "QAFeatures", ["x", "y", "example_index", "piece_word", "max_context"]
)


def _words_with_offsets(context):
    """Whitespace words of a context and the character where each starts."""
    return [(m.group(), m.start()) for m in re.finditer(r"\S+", context)]


def _home_window(windows, i):
    """The window where piece i has the most context on its shorter side (the
    longer window on ties), as google-research/bert scores it."""

    def score(window):
        start, end = windows[window]
        return min(i - start, end - 1 - i) + 0.01 * (end - start)

    return max((w for w, (s, e) in enumerate(windows) if s <= i < e), key=score)


def prepare_qa_features(
    tokenizer,
    questions,
    contexts,
    answers=None,
    doc_stride: int = 128,
    max_question_length: int | None = None,
) -> QAFeatures:
    """Question/context pairs as windows of `[CLS] question [SEP] context [SEP]`.

    Args:
        tokenizer: `tfbert.text.BertTokenizer` (its `sequence_length` is used).
        questions, contexts: lists of strings.
        answers: optional list of (answer_text, answer_start_char) or None (no
            answer) per example; gives training labels.
        doc_stride: int, default 128. Pieces between window starts.
        max_question_length: int, default half the sequence length (64 for
            128). Longer questions are cut.

    Returns:
        `QAFeatures`: x (dict of (F, T) int32), y (dict `start_logits` /
        `end_logits` of (F,) int32 piece positions, None without answers),
        example_index (F,), piece_word (F, T) context word of each piece or
        -1, max_context (F, T) bool.
    """
    length = tokenizer.sequence_length
    if max_question_length is None:
        max_question_length = length // 2
    if max_question_length + 8 > length:
        raise ValueError(
            f"`max_question_length`={max_question_length} leaves too little room for "
            f"the context in sequences of {length}; lower it or raise sequence_length."
        )
    if answers is not None and len(answers) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers.")
    question_pieces = tokenizer.tokenize(list(questions)).to_list()
    rows = collections.defaultdict(list)
    for example, context in enumerate(contexts):
        words = _words_with_offsets(context)
        pieces = tokenizer.tokenize([w for w, _ in words]).to_list() if words else []
        doc, doc_word = [], []
        for word, word_pieces in enumerate(pieces):
            doc.extend(word_pieces)
            doc_word.extend([word] * len(word_pieces))
        answer_span = None
        if answers is not None and answers[example] is not None:
            text, start_char = answers[example]
            end_char = start_char + len(text)
            hit = [
                i
                for i, (w, s) in enumerate(words)
                if s < end_char and s + len(w) > start_char and pieces[i]
            ]
            if hit:
                first = doc_word.index(hit[0])
                last = len(doc_word) - 1 - doc_word[::-1].index(hit[-1])
                answer_span = (first, last)
        question = question_pieces[example][:max_question_length]
        room = length - len(question) - 3
        starts = list(range(0, max(len(doc) - room, 0) + 1, doc_stride))
        if starts[-1] + room < len(doc):
            starts.append(len(doc) - room)
        windows = [(start, min(start + room, len(doc))) for start in starts]

        home = [_home_window(windows, i) for i in range(len(doc))]
        for window, (start, end) in enumerate(windows):
            ids = [tokenizer.cls_token_id, *question, tokenizer.sep_token_id, *doc[start:end]]
            offset = len(question) + 2
            piece_word = np.full(length, -1, np.int32)
            piece_word[offset : offset + end - start] = doc_word[start:end]
            max_context = np.zeros(length, bool)
            max_context[offset : offset + end - start] = [
                home[i] == window for i in range(start, end)
            ]
            ids.append(tokenizer.sep_token_id)
            token_ids = np.full(length, tokenizer.pad_token_id, np.int32)
            token_ids[: len(ids)] = ids
            segment_ids = np.zeros(length, np.int32)
            segment_ids[offset : len(ids)] = 1
            rows["token_ids"].append(token_ids)
            rows["segment_ids"].append(segment_ids)
            rows["padding_mask"].append((token_ids != tokenizer.pad_token_id).astype(np.int32))
            rows["example_index"].append(example)
            rows["piece_word"].append(piece_word)
            rows["max_context"].append(max_context)
            if answers is not None:
                inside = (
                    answer_span is not None and start <= answer_span[0] <= answer_span[1] < end
                )
                rows["start"].append(offset + answer_span[0] - start if inside else 0)
                rows["end"].append(offset + answer_span[1] - start if inside else 0)
    x = {key: np.stack(rows[key]) for key in ("token_ids", "segment_ids", "padding_mask")}
    y = None
    if answers is not None:
        y = {
            "start_logits": np.array(rows["start"], np.int32),
            "end_logits": np.array(rows["end"], np.int32),
        }
    return QAFeatures(
        x,
        y,
        np.array(rows["example_index"], np.int32),
        np.stack(rows["piece_word"]),
        np.stack(rows["max_context"]),
    )


def decode_answers(
    start_logits,
    end_logits,
    features: QAFeatures,
    contexts,
    n_best: int = 20,
    max_answer_length: int = 30,
    allow_no_answer: bool = False,
    null_score_threshold: float = 0.0,
) -> list[str]:
    """The best answer span of each example, as text of its context.

    Per window, the `n_best` start and end positions are paired when the end
    does not precede the start, both lie in the context, the start piece has
    its max context there, and the span has at most `max_answer_length`
    pieces; the best start + end logit over all windows wins. With
    `allow_no_answer`, an example answers "" when its best null score
    (start + end logit at [CLS]) beats the best span by more than
    `null_score_threshold`.
    """
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    best = {}  # example -> (score, first word, last word)
    null = {}
    for feature, example in enumerate(features.example_index):
        starts, ends = start_logits[feature], end_logits[feature]
        words, max_context = features.piece_word[feature], features.max_context[feature]
        null_score = starts[0] + ends[0]
        null[example] = min(null.get(example, np.inf), null_score)
        for s in np.argsort(-starts)[:n_best]:
            if words[s] < 0 or not max_context[s]:
                continue
            for e in np.argsort(-ends)[:n_best]:
                if words[e] < 0 or e < s or e - s + 1 > max_answer_length:
                    continue
                score = starts[s] + ends[e]
                if example not in best or score > best[example][0]:
                    best[example] = (score, words[s], words[e])
    answers = []
    for example, context in enumerate(contexts):
        if example not in best:
            answers.append("")
            continue
        score, first, last = best[example]
        if allow_no_answer and null.get(example, -np.inf) - score > null_score_threshold:
            answers.append("")
            continue
        words = _words_with_offsets(context)
        answers.append(context[words[first][1] : words[last][1] + len(words[last][0])])
    return answers


def _normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, articles or extra spaces."""
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, truth: str) -> float:
    predicted, true = _normalize_answer(prediction).split(), _normalize_answer(truth).split()
    if not predicted or not true:
        return float(predicted == true)
    common = sum((collections.Counter(predicted) & collections.Counter(true)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(true)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions, gold_answers) -> dict:
    """SQuAD exact match and F1 (in %), the best over each example's gold answers.

    As the official SQuAD 2.0 evaluation script: gold answers that normalize
    to nothing ("the", ".") are dropped first, and a question left with no
    gold answer counts as unanswerable, where only a prediction that
    normalizes to nothing ("" or "the") scores.

    Args:
        predictions: list of predicted strings ("" for no answer).
        gold_answers: list of lists of acceptable answers ([] or [""] when the
            question has no answer).
    """
    if len(predictions) != len(gold_answers):
        raise ValueError(f"{len(predictions)} predictions for {len(gold_answers)} examples.")
    exact = f1 = 0.0
    for prediction, golds in zip(predictions, gold_answers, strict=True):
        golds = [gold for gold in golds if _normalize_answer(gold)] or [""]
        exact += max(
            float(_normalize_answer(prediction) == _normalize_answer(gold)) for gold in golds
        )
        f1 += max(_f1(prediction, gold) for gold in golds)
    count = max(len(predictions), 1)
    return {"exact_match": 100 * exact / count, "f1": 100 * f1 / count}
