import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from tfbert.text import corpus_bleu, rouge_l
from tfbert.text.generation_scores import tokenize_13a


def perturbed(texts, seed):
    """Real sentences with words dropped, repeated and swapped, as a weak system writes."""
    rng = np.random.default_rng(seed)
    outputs = []
    for text in texts:
        words = text.split()
        kept = [w for w in words if rng.random() > 0.25] or words[:1]
        if len(kept) > 3 and rng.random() < 0.5:
            i = rng.integers(len(kept) - 1)
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
        if rng.random() < 0.2:
            kept.append(kept[0])
        outputs.append(" ".join(kept))
    return outputs


@pytest.fixture(scope="module")
def systems(german_english):
    """(hypotheses, references) pairs of real text: perturbed references, the
    copy-source baseline (German as output) and other sentences."""
    test = german_english[1]
    english = [en for _, en in test]
    german = [de for de, _ in test]
    return {
        "perturbed": (perturbed(english, 0), english),
        "heavily perturbed": (perturbed(perturbed(english, 1), 2), english),
        "copy source": (german, english),
        "shifted": (english[1:] + english[:1], english),
        "exact": (english, english),
    }


def test_corpus_bleu_equals_sacrebleu(systems):
    for name, (hypotheses, references) in systems.items():
        expected = sacrebleu.corpus_bleu(hypotheses, [references]).score
        assert corpus_bleu(hypotheses, references) == pytest.approx(expected, abs=0.01), name
    assert corpus_bleu(*systems["exact"]) == pytest.approx(100.0)


def test_corpus_bleu_edge_cases_equal_sacrebleu(systems):
    hypotheses, references = systems["perturbed"]
    cases = {
        "multi-reference": (hypotheses[:50], [references[:50], hypotheses[50:100]]),
        "short outputs": (["Yes.", "No", ""], [["Yes, it is."], ["No."], ["Maybe."]]),
        "no trigram matches": (["a b c d", "e f"], [["a b x c d"], ["e f"]]),
        "empty outputs": (["", ""], [["A sentence."], ["Another one."]]),
        "entities and numbers": (
            ["It costs &amp; 1,000.50 - 2-3 <b>", "e-mail: x@y.z"],
            [["It costs & 1,000.50 - 2-3 <b>"], ["e-mail : x@y.z"]],
        ),
    }
    for name, (hyps, streams) in cases.items():
        if name != "multi-reference":
            streams = [[refs[0] for refs in streams]]
            ours = corpus_bleu(hyps, streams[0])
        else:
            ours = corpus_bleu(hyps, list(zip(*streams, strict=True)))
        expected = sacrebleu.corpus_bleu(hyps, streams).score
        assert ours == pytest.approx(expected, abs=0.01), name
    tokenizer = sacrebleu.metrics.bleu.BLEU().tokenizer
    for text in hypotheses[:300] + ["A-1 &quot;x&quot; 3.5, 4,5 e.g. (a)"]:
        assert tokenize_13a(text) == tokenizer(text.rstrip()).split()


def test_rouge_l_equals_rouge_score(systems, vocabulary_file):
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for name, (predictions, references) in systems.items():
        expected = np.mean(
            [
                scorer.score(ref, pred)["rougeL"].fmeasure
                for pred, ref in zip(predictions, references, strict=True)
            ]
        )
        assert rouge_l(predictions, references) == pytest.approx(expected, abs=1e-6), name
    odd = (
        ["", "Ünïcode — only!", "12 apples", "?!"],
        ["Something.", "unicode only", "12 Apples.", ""],
    )
    expected = np.mean([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(*odd, strict=True)])
    assert rouge_l(*odd) == pytest.approx(expected, abs=1e-6)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="2 hypotheses and 1 references"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match=r"must be strings; received \['int'\]"):
        corpus_bleu(["a", 3], ["a", "b"])
    with pytest.raises(ValueError, match="at least one reference"):
        corpus_bleu(["a"], [[]])
    with pytest.raises(ValueError, match="one reference per prediction"):
        rouge_l(["a"], [["a", "b"]])
    with pytest.raises(ValueError, match="at least one prediction"):
        rouge_l([], [])
