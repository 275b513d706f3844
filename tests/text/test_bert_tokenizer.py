import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from tokenizers import BertWordPieceTokenizer

from tfbert.text import BertTokenizer


def test_rotten_tomatoes_ids_match_hugging_face(vocabulary_file, rotten_tomatoes):
    texts = [text for text, _ in rotten_tomatoes[:500]]
    reference = BertWordPieceTokenizer(vocabulary_file, lowercase=True)
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=512)
    ours = tokenizer.tokenize(texts).to_list()
    theirs = [encoding.ids[1:-1] for encoding in reference.encode_batch(texts)]
    matches = sum(a == b for a, b in zip(ours, theirs, strict=True))
    assert matches / len(texts) >= 0.99, f"{matches}/{len(texts)}"


def test_single_and_pair_packing(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=12)
    out = tokenizer(["A great film!"], ["Dull."])
    ids = out["token_ids"].numpy()[0].tolist()
    words = tokenizer.vocabulary
    assert [words[i] for i in ids] == [
        "[CLS]",
        "a",
        "great",
        "film",
        "!",
        "[SEP]",
        "dull",
        ".",
        "[SEP]",
        "[PAD]",
        "[PAD]",
        "[PAD]",
    ]
    assert out["segment_ids"].numpy()[0].tolist() == [0] * 6 + [1] * 3 + [0] * 3
    assert out["padding_mask"].numpy()[0].tolist() == [1] * 9 + [0] * 3
    assert all(v.dtype == tf.int32 for v in out.values())


def test_truncation_trims_the_longer_segment_first(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=10)
    out = tokenizer(["one two three four five six seven eight"], ["yes no"])
    words = [tokenizer.vocabulary[i] for i in out["token_ids"].numpy()[0]]
    # 10 slots - 3 special tokens = 7: the short segment keeps both tokens.
    assert words == ["[CLS]", "one", "two", "three", "four", "five", "[SEP]", "yes", "no", "[SEP]"]


def test_inputs_of_every_kind_and_tf_data(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=8)
    texts = ["good", "bad movie"]
    expected = tokenizer(texts)["token_ids"].numpy()
    for variant in (np.array(texts), tf.constant(texts), tuple(texts)):
        np.testing.assert_array_equal(tokenizer(variant)["token_ids"].numpy(), expected)
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tokenizer)
    np.testing.assert_array_equal(next(iter(dataset))["token_ids"].numpy(), expected)


def test_detokenize_round_trip(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=16)
    out = tokenizer(["the acting is superb ."])
    assert tokenizer.detokenize(out["token_ids"]).numpy()[0] == b"the acting is superb ."


def test_config_round_trip_and_keras_save(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=8, lowercase=True)
    restored = BertTokenizer.from_config(tokenizer.get_config())
    np.testing.assert_array_equal(
        restored(["hello world"])["token_ids"].numpy(),
        tokenizer(["hello world"])["token_ids"].numpy(),
    )
    assert (
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(tokenizer)
        ).vocabulary_size
        == 30522
    )


def test_bad_inputs_raise_clear_errors(vocabulary_file):
    with pytest.raises(ValueError, match="does not exist"):
        BertTokenizer("/no/such/vocab.txt")
    with pytest.raises(ValueError, match=r"lacks BERT's special tokens \['\[MASK\]'\]"):
        BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(ValueError, match="`sequence_length` must be an integer >= 3"):
        BertTokenizer(vocabulary_file, sequence_length=2)
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=8)
    with pytest.raises(ValueError, match="`texts` must be strings.*int32"):
        tokenizer.tokenize(tf.constant([1, 2]))


def test_vocabulary_file_with_trailing_blank_lines():
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hi"]) + "\n\n")
    assert BertTokenizer(path).vocabulary_size == 6
