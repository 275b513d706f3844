import numpy as np
import pytest

from tfbert.text import (
    IGNORE_LABEL,
    BertTokenizer,
    align_word_labels,
    entity_scores,
    entity_spans,
    wnut_ner,
    word_predictions,
)


def test_entity_spans_read_bio_tags_as_seqeval_does():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert entity_spans(["B-PER", "B-PER"]) == {("PER", 0, 0), ("PER", 1, 1)}
    # An I- tag that does not continue an entity of its type starts one.
    assert entity_spans(["O", "I-ORG", "I-ORG"]) == {("ORG", 1, 2)}
    assert entity_spans(["B-PER", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 1)}
    assert entity_spans([]) == set()


def test_entity_scores_count_exact_spans_only():
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    guess = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-PER"]]
    scores = entity_scores(truth, guess)
    # Correct: LOC and ORG; PER (0, 0) is not PER (0, 1); the extra PER is wrong.
    assert (scores["correct"], scores["predicted"], scores["true"]) == (2, 4, 3)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    with pytest.raises(ValueError, match="3 true tags but 2 predicted"):
        entity_scores([["O", "O", "O"]], [["O", "O"]])


def test_alignment_on_real_wnut_sentences_round_trips(vocabulary_file):
    sentences = wnut_ner()[:200]
    words, tags = [s for s, _ in sentences], [t for _, t in sentences]
    names = sorted({tag for sentence in tags for tag in sentence})
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=64)
    x, y, word_ids = align_word_labels(tokenizer, words, tags, names)
    assert x["token_ids"].shape == y.shape == word_ids.shape == (200, 64)
    flat = tokenizer.tokenize([word for sentence in words for word in sentence]).to_list()
    first_pieces, start = [], 0
    for sentence in words:
        first_pieces.append([p[0] if p else None for p in flat[start : start + len(sentence)]])
        start += len(sentence)
    for row in range(len(words)):
        labelled = np.flatnonzero(y[row] != IGNORE_LABEL)
        # Each labelled position is the first piece of its word.
        for position in labelled:
            word = word_ids[row, position]
            assert word_ids[row, position - 1] != word
            assert x["token_ids"][row, position] == first_pieces[row][word]
            assert names[y[row, position]] == tags[row][word]
        assert x["token_ids"][row, 0] == tokenizer.cls_token_id
    # Reading the gold labels back through word_predictions gives the tags,
    # apart from words cut off at 64 pieces.
    one_hot = np.eye(len(names))[np.where(y == IGNORE_LABEL, 0, y)]
    decoded = word_predictions(one_hot, word_ids, words, names)
    fits = [row for row in range(200) if len(set(word_ids[row]) - {-1}) == len(words[row])]
    assert len(fits) > 150
    assert all(decoded[row] == tags[row] for row in fits)


def test_alignment_errors_name_the_sentence(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=16)
    with pytest.raises(ValueError, match="Sentence 1 has 2 words but 1 labels"):
        align_word_labels(tokenizer, [["a"], ["b", "c"]], [["O"], ["O"]], ["O"])
    with pytest.raises(ValueError, match="2 sentences but 1 label lists"):
        align_word_labels(tokenizer, [["a"], ["b"]], [["O"]], ["O"])
