"""Vocabulary trimming: in-domain texts tokenize to the same pieces and the
trimmed classifier gives the same outputs on them; bad input is refused."""

import numpy as np
import pytest

from tests.test_case import assert_all_close
from tfbert.compression.structured_pruning import prune_ffn, prune_heads
from tfbert.compression.vocabulary_trimming import trim_vocabulary
from tfbert.models import BertBackbone, BertClassifier, TextClassifier
from tfbert.text import BertTokenizer

SMALL = {
    "num_layers": 2,
    "num_heads": 4,
    "hidden_dim": 32,
    "intermediate_dim": 64,
    "max_sequence_length": 64,
    "dropout": 0.0,
}


@pytest.fixture(scope="module")
def texts(rotten_tomatoes):
    return [text for text, _ in rotten_tomatoes[:300]]


@pytest.fixture(scope="module")
def text_classifier(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=48)
    backbone = BertBackbone(vocabulary_size=tokenizer.vocabulary_size, **SMALL)
    classifier = BertClassifier(backbone, 3, dropout=0.0, pooling="mean")
    return TextClassifier(tokenizer, classifier, label_names=["a", "b", "c"])


def _pieces(tokenizer, texts, window=None):
    """Each text's pieces; with `window`, only its first `window`."""
    ragged = tokenizer.tokenize(texts)[:, :window]
    return [[tokenizer.vocabulary[i] for i in row] for row in ragged.to_list()]


def test_in_domain_tokenization_and_outputs_unchanged(text_classifier, texts):
    trimmed, kept = trim_vocabulary(text_classifier, texts)
    original = text_classifier.tokenizer
    assert trimmed.tokenizer.vocabulary_size == len(kept) < original.vocabulary_size // 2
    assert trimmed.tokenizer.vocabulary == [original.vocabulary[i] for i in kept]
    assert trimmed.label_names == ["a", "b", "c"]
    # The pieces the model reads (48 with [CLS] and [SEP]) are the same.
    assert _pieces(trimmed.tokenizer, texts, 46) == _pieces(original, texts, 46)
    old = original(texts)
    new = trimmed.tokenizer(texts)
    np.testing.assert_array_equal(np.array(kept)[new["token_ids"].numpy()], old["token_ids"])
    np.testing.assert_array_equal(new["padding_mask"], old["padding_mask"])
    assert_all_close(
        trimmed.classifier.predict(dict(new), verbose=0),
        text_classifier.classifier.predict(dict(old), verbose=0),
        atol=1e-5,
    )


def test_only_the_pieces_the_model_reads_of_a_long_text_are_kept(text_classifier, imdb_reviews):
    # IMDB reviews run to hundreds of pieces; the model reads 46 (48 with [CLS], [SEP]).
    reviews = [text for text, _ in imdb_reviews[:40]]
    original = text_classifier.tokenizer
    trimmed, kept = trim_vocabulary(text_classifier, reviews)
    whole = {int(i) for i in original.tokenize(reviews).flat_values.numpy()}
    read = {int(i) for i in original.tokenize(reviews)[:, :46].flat_values.numpy()}
    assert read <= set(kept) and not whole - read <= set(kept)
    old, new = original(reviews), trimmed.tokenizer(reviews)
    np.testing.assert_array_equal(np.array(kept)[new["token_ids"].numpy()], old["token_ids"])
    assert_all_close(
        trimmed.classifier.predict(dict(new), verbose=0),
        text_classifier.classifier.predict(dict(old), verbose=0),
        atol=1e-5,
    )


def test_unseen_words_still_tokenize_without_unknowns(text_classifier, texts):
    trimmed, _ = trim_vocabulary(text_classifier, texts[:20])
    # Every single character and "##" character stays: new words fall back to them.
    pieces = _pieces(trimmed.tokenizer, ["zyxwvut quokkas"])[0]
    assert "[UNK]" not in pieces
    assert "".join(p.removeprefix("##") for p in pieces) == "zyxwvutquokkas"


def test_pruned_classifier(text_classifier, texts):
    classifier = prune_ffn(prune_heads(text_classifier.classifier, {0: [1]}), {1: [0, 5]})
    model = TextClassifier(text_classifier.tokenizer, classifier)
    trimmed, _ = trim_vocabulary(model, texts)
    sample = texts[:16]
    assert_all_close(
        trimmed.classifier.predict(dict(trimmed.tokenizer(sample)), verbose=0),
        classifier.predict(dict(model.tokenizer(sample)), verbose=0),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "texts, match",
    [("one string", "non-empty list"), ([], "non-empty list"), (["ok", 3], "only strings")],
)
def test_bad_texts(text_classifier, texts, match):
    with pytest.raises(ValueError, match=match):
        trim_vocabulary(text_classifier, texts)


def test_bad_model(text_classifier):
    with pytest.raises(ValueError, match="TextClassifier"):
        trim_vocabulary(text_classifier.classifier, ["a film"])
    with pytest.raises(ValueError, match="batch_size"):
        trim_vocabulary(text_classifier, ["a film"], batch_size=0)
