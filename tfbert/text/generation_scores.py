"""Corpus BLEU and ROUGE-L, scored as the reference tools score them.

`corpus_bleu` follows sacrebleu's defaults (mteval-v13a tokenization, case
kept, exponential smoothing of zero n-gram counts, brevity penalty on the
closest reference length) and `rouge_l` follows Google's `rouge-score`
(lower-cased ASCII alphanumeric tokens, no stemming, F-measure of the
longest common subsequence averaged over pairs). The tests check both
against those packages on real model output; neither package is needed at
run time.
"""

import collections
import math
import re

MAX_ORDER = 4

# mteval-v13a: split off ASCII symbols; periods and commas unless beside a digit.
_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)
_13A_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))


def tokenize_13a(text: str) -> list[str]:
    """Words of `text` as mteval-v13a (sacrebleu's default) splits them."""
    text = text.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, character in _13A_ENTITIES:
        text = text.replace(entity, character)
    text = f" {text} "
    for pattern, replacement in _13A_RULES:
        text = pattern.sub(replacement, text)
    return text.split()


def _ngrams(words: list[str]) -> collections.Counter:
    return collections.Counter(
        tuple(words[start : start + order])
        for order in range(1, MAX_ORDER + 1)
        for start in range(len(words) - order + 1)
    )


def _as_reference_sets(hypotheses, references) -> list[list[str]]:
    """One list of reference strings per hypothesis."""
    hypotheses = list(hypotheses)
    references = [[r] if isinstance(r, str) else list(r) for r in references]
    if len(references) != len(hypotheses):
        raise ValueError(
            f"Received {len(hypotheses)} hypotheses and {len(references)} references; "
            "pass one reference (a string) or a list of references per hypothesis."
        )
    for items in (hypotheses, *references):
        kinds = sorted({type(item).__name__ for item in items if not isinstance(item, str)})
        if kinds:
            raise ValueError(f"Hypotheses and references must be strings; received {kinds}.")
    if any(not refs for refs in references):
        raise ValueError("Every hypothesis needs at least one reference string.")
    return references


def corpus_bleu(hypotheses, references) -> float:
    """Corpus BLEU (0-100) equal to `sacrebleu.corpus_bleu` with its defaults.

    Args:
        hypotheses: list of output strings.
        references: one reference string per hypothesis, or one list of
            reference strings per hypothesis (multi-reference BLEU).
    """
    reference_sets = _as_reference_sets(hypotheses, references)
    correct, total = [0] * MAX_ORDER, [0] * MAX_ORDER
    hypothesis_length = reference_length = 0
    for hypothesis, refs in zip(hypotheses, reference_sets, strict=True):
        words = tokenize_13a(hypothesis)
        clipped = collections.Counter()
        lengths = []
        for reference in refs:
            reference_words = tokenize_13a(reference)
            lengths.append(len(reference_words))
            clipped |= _ngrams(reference_words)  # max count over references
        # The closest reference length; the shorter one on a tie.
        reference_length += min(lengths, key=lambda n: (abs(n - len(words)), n))
        hypothesis_length += len(words)
        for ngram, count in _ngrams(words).items():
            total[len(ngram) - 1] += count
            correct[len(ngram) - 1] += min(count, clipped[ngram])
    if not any(correct):
        return 0.0
    log_precision, smoothing = 0.0, 1.0
    for matches, count in zip(correct, total, strict=True):
        if count == 0:  # no n-grams this long: the higher orders score zero
            return 0.0
        if matches == 0:
            smoothing *= 2
            log_precision += math.log(100.0 / (smoothing * count))
        else:
            log_precision += math.log(100.0 * matches / count)
    brevity = 1.0
    if hypothesis_length < reference_length:
        brevity = math.exp(1 - reference_length / hypothesis_length)
    return brevity * math.exp(log_precision / MAX_ORDER)


def tokenize_rouge(text: str) -> list[str]:
    """Words of `text` as `rouge-score` splits them: lower-cased a-z/0-9 runs."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _lcs_length(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for word in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(predictions, references) -> float:
    """Mean ROUGE-L F-measure (0-1) equal to `rouge_score.rouge_scorer` (rougeL,
    no stemming) averaged over (reference, prediction) pairs."""
    reference_sets = _as_reference_sets(predictions, references)
    if any(len(refs) != 1 for refs in reference_sets):
        raise ValueError("`rouge_l` scores one reference per prediction; pass strings.")
    if not reference_sets:
        raise ValueError("`rouge_l` needs at least one prediction.")
    scores = []
    for prediction, (reference,) in zip(predictions, reference_sets, strict=True):
        predicted, wanted = tokenize_rouge(prediction), tokenize_rouge(reference)
        if not predicted or not wanted:
            scores.append(0.0)
            continue
        common = _lcs_length(wanted, predicted)
        precision, recall = common / len(predicted), common / len(wanted)
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)
