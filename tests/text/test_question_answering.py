import numpy as np
import pytest

from tfbert.text import (
    BertTokenizer,
    bbc_news,
    decode_answers,
    prepare_qa_features,
    squad_scores,
)


def test_squad_scores_follow_the_official_normalization():
    scores = squad_scores(
        ["the Eiffel Tower", "Paris France", "", "yes"],
        [["Eiffel Tower"], ["Paris"], [], [""]],
    )
    # EM: 1, 0, 1 (both no answer), 0; F1: 1, 2/3, 1, 0.
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    with pytest.raises(ValueError, match="2 predictions for 1 examples"):
        squad_scores(["a", "b"], [["a"]])


def test_squad_scores_drop_gold_answers_that_normalize_to_nothing():
    """The official SQuAD 2.0 script keeps only gold answers with something
    left after normalization; with none left only "" is right."""

    def scores(prediction, golds):
        result = squad_scores([prediction], [golds])
        return result["exact_match"], result["f1"]

    # "the" normalizes to "": not an answer the empty prediction can match.
    assert scores("", ["the", "cat"]) == (0.0, 0.0)
    assert scores("the cat", ["the", "cat"]) == (100.0, 100.0)
    assert scores("a cat sat", ["the", "cat"]) == (0.0, pytest.approx(100 * 2 / 3))
    # Only empty-after-normalization golds: unanswerable, "" is the answer.
    assert scores("", ["the", "."]) == (100.0, 100.0)
    assert scores("cat", ["an", "!"]) == (0.0, 0.0)
    assert scores("", []) == (100.0, 100.0)


@pytest.fixture(scope="module")
def long_contexts():
    """Real BBC articles (hundreds of words), with answers taken from them."""
    articles = [text for text, _ in bbc_news()[0][:6]]
    questions, answers = [], []
    for article in articles:
        words = article.split()
        # A span from the end of the article, so windows must slide to reach it.
        position = article.rindex(words[-12])
        answer = " ".join(words[-12:-9])
        questions.append(" ".join(words[-16:-12]) + "?")
        answers.append((answer, position))
    return questions, articles, answers


def test_windows_slide_over_long_contexts_and_decode_the_answers(long_contexts, vocabulary_file):
    questions, contexts, answers = long_contexts
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=64)
    features = prepare_qa_features(tokenizer, questions, contexts, answers, doc_stride=24)
    count = len(features.example_index)
    assert count > 3 * len(contexts)  # long articles need many windows
    for example in range(len(contexts)):
        rows = np.flatnonzero(features.example_index == example)
        words = features.piece_word[rows]
        # Every context word is read in some window, and each piece scored in one.
        covered = sorted({int(w) for w in words[words >= 0]})
        assert covered == list(range(len(contexts[example].split())))
        pieces = tokenizer.tokenize(contexts[example].split()).to_list()
        assert features.max_context[rows].sum() == sum(len(p) for p in pieces)
        # Windows without the answer point at [CLS].
        starts = features.y["start_logits"][rows]
        assert (starts == 0).any() and (starts > 0).any()
    # Oracle logits (the labels) decode back to the answer text.
    start_logits = np.full((count, 64), -10.0)
    end_logits = np.full((count, 64), -10.0)
    start_logits[np.arange(count), features.y["start_logits"]] = 10.0
    end_logits[np.arange(count), features.y["end_logits"]] = 10.0
    decoded = decode_answers(start_logits, end_logits, features, contexts)
    assert decoded == [answer for answer, _ in answers]
    assert squad_scores(decoded, [[a] for a, _ in answers])["exact_match"] == 100.0


def test_decoding_rules_and_no_answer(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=32)
    context = "the quick brown fox jumps over the lazy dog"
    features = prepare_qa_features(tokenizer, ["who jumps?"], [context])
    assert features.y is None
    positions = {int(w): i for i, w in enumerate(features.piece_word[0]) if w >= 0}
    start, end = np.full((1, 32), -5.0), np.full((1, 32), -5.0)
    start[0, positions[1]], end[0, positions[3]] = 4.0, 4.0  # "quick brown fox"
    end[0, positions[0]] = 6.0  # an end before the start is never chosen
    assert decode_answers(start, end, features, [context]) == ["quick brown fox"]
    # At most 2 pieces: the best allowed span is "the" (-5 + 6) over "quick" (4 - 5).
    assert decode_answers(start, end, features, [context], max_answer_length=2) == ["the"]
    start[0, 0], end[0, 0] = 6.0, 6.0  # [CLS]: the null answer scores 12 > 8
    assert decode_answers(start, end, features, [context]) == ["quick brown fox"]
    assert decode_answers(start, end, features, [context], allow_no_answer=True) == [""]
    with pytest.raises(ValueError, match="leaves too little room"):
        prepare_qa_features(tokenizer, ["q"], [context], max_question_length=30)
