import os

import numpy as np
import pytest
import tensorflow as tf

from tfbert.text import (
    BertTokenizer,
    bbc_headlines,
    bbc_news,
    restore_spacing,
    seq2seq_dataset,
    seq2seq_tokenizer,
)
from tfbert.text.corpora import held_out
from tfbert.text.seq2seq_dataset import default_buckets

pytestmark = pytest.mark.xdist_group("test_seq2seq_data")


@pytest.fixture(scope="module")
def small_pairs(german_english):
    """3,000 real training pairs and a 3,000-token vocabulary learned on them."""
    pairs = german_english[0][:3000]
    return pairs, seq2seq_tokenizer(pairs, 3000)


def test_german_english_pairs_are_sentences_with_a_fixed_held_out_split(german_english):
    train, test = german_english
    assert 16_000 < len(train) < 17_500 and 800 < len(test) < 1_000
    assert not {de for de, _ in train} & {de for de, _ in test}
    assert all(held_out(de, 20) for de, _ in test)
    for pair in train[:2000] + test:
        for side in pair:
            assert side[-1] in ".!?" and side[0].isalpha() and side[0].isupper(), side
            assert not set(side) & set("[]{}<>;"), side
    # The dictionary's own alignment: the sub-entry "Es war purer Zufall."
    assert ("Es war purer Zufall.", "It was sheer/pure coincidence.") in train + test


def test_bbc_headlines_are_the_first_line_of_each_article():
    pairs, test = bbc_headlines(), bbc_headlines("test")
    assert len(pairs) == 2096  # 2,225 files, some filed twice
    article, headline = pairs[0]
    assert headline == "Ad sales boost Time Warner profit"
    assert article.startswith("Quarterly profits at US media giant TimeWarner jumped 76%")
    first_text = bbc_news()[0][0][0]
    assert first_text.split("\n", 1)[0].strip() == headline
    assert headline not in article and "\n" not in article
    assert 180 < len(test) < 260
    assert not {h for _, h in test} & {h for _, h in bbc_headlines("train")}
    with pytest.raises(ValueError, match="`split` must be 'train', 'test' or None"):
        bbc_headlines("validation")


def test_restore_spacing_gives_back_real_sentences(german_english, vocabulary_file):
    """BERT's split words, joined by spaces, become the original strings again."""
    tokenizer = BertTokenizer(vocabulary_file, lowercase=False, strip_accents=False)
    english = [en for _, en in german_english[1] + german_english[0][:2000]]
    headlines = [h for _, h in bbc_headlines()]
    for texts, least in ((english, 0.96), (headlines, 0.98)):
        words = tokenizer.split_words(texts).to_list()
        joined = [b" ".join(row) for row in words]
        restored = [t.decode("utf-8") for t in restore_spacing(joined).numpy()]
        exact = np.mean([r == " ".join(t.split()) for r, t in zip(restored, texts, strict=True)])
        assert exact >= least, exact
    cases = {
        "I don ' t know ( yet ) .": "I don't know (yet).",
        "It ’ s 20 . 5 % , not 1 , 000 .": "It’s 20.5%, not 1,000.",
        'He said " stop " at 10 : 30 in the U . S .': 'He said "stop" at 10:30 in the U.S.',
        "Rover deal ' may cost 2 , 000 jobs '": "Rover deal 'may cost 2,000 jobs'",
        "an e - mail and / or $ 5": "an e-mail and/or $5",
        "Dan O ' Neill ’ s": "Dan O'Neill’s",
        "": "",
    }
    restored = restore_spacing(list(cases)).numpy()
    assert [r.decode("utf-8") for r in restored] == list(cases.values())

    # The same ops in a graph (a tf.function, as in a SavedModel).
    graph = tf.function(restore_spacing, input_signature=[tf.TensorSpec([None], tf.string)])
    assert graph(tf.constant(list(cases))).numpy().tolist() == restored.tolist()


def test_batches_hold_shifted_targets_and_masks(small_pairs):
    pairs, tokenizer = small_pairs
    dataset = seq2seq_dataset(pairs, tokenizer, 48, 48, tokens_per_batch=1024, seed=3)
    rows, targets = 0, []
    for inputs, labels in dataset.as_numpy_iterator():
        source, decoder = inputs["encoder_token_ids"], inputs["decoder_token_ids"]
        assert source.dtype == decoder.dtype == labels.dtype == np.int32
        assert source.shape[0] * max(source.shape[1], labels.shape[1]) <= 1024
        np.testing.assert_array_equal(inputs["encoder_padding_mask"], source != 0)
        np.testing.assert_array_equal(inputs["decoder_padding_mask"], decoder != 0)
        assert decoder.shape == labels.shape
        assert np.all(decoder[:, 0] == tokenizer.cls_token_id)
        shifted = decoder[:, 1:] != 0  # the decoder reads the labels one step late
        np.testing.assert_array_equal(decoder[:, 1:][shifted], labels[:, :-1][shifted])
        for row in range(len(source)):
            source_length = int(inputs["encoder_padding_mask"][row].sum())
            label_length = int((labels[row] != 0).sum())
            assert source[row, source_length - 1] == tokenizer.sep_token_id
            assert labels[row, label_length - 1] == tokenizer.sep_token_id
            assert (decoder[row] != 0).sum() == label_length
        rows += len(source)
        targets.extend(restore_spacing(tokenizer.detokenize(labels)).numpy())
    # Every pair once per epoch, its target readable again.
    assert rows == len(pairs)
    expected = sorted(" ".join(t.split()) for _, t in pairs)
    decoded = [t.decode("utf-8") for t in targets]
    assert np.mean([t in set(expected) for t in decoded]) > 0.9


def test_bucketing_by_tokens_pads_less_than_one_length(small_pairs):
    pairs, tokenizer = small_pairs
    padded = real = 0
    dataset = seq2seq_dataset(pairs, tokenizer, 64, 64, tokens_per_batch=2048)
    for inputs, _ in dataset.as_numpy_iterator():
        padded += inputs["encoder_padding_mask"].size
        real += int(inputs["encoder_padding_mask"].sum())
    lengths = tokenizer.tokenize([s for s, _ in pairs]).row_lengths().numpy() + 1
    # Padding every source to the longest one would keep this share real.
    one_length = lengths.mean() / lengths.max()
    assert real / padded > 0.65 > 2 * one_length, (real / padded, one_length)


def test_static_shapes_give_one_shape_per_bucket(small_pairs):
    pairs, tokenizer = small_pairs
    dataset = seq2seq_dataset(pairs, tokenizer, 40, 40, tokens_per_batch=960, static_shapes=True)
    allowed = {(960 // length, length) for length in default_buckets(40)}
    shapes = set()
    for inputs, labels in dataset.as_numpy_iterator():
        shapes.add(inputs["encoder_token_ids"].shape)
        assert (
            inputs["decoder_token_ids"].shape == labels.shape == inputs["encoder_token_ids"].shape
        )
    assert shapes <= allowed and len(shapes) >= 3
    assert default_buckets(128) == [8, 16, 24, 32, 48, 64, 96, 128]


def test_same_seed_same_order_and_each_epoch_reshuffles(small_pairs):
    pairs, tokenizer = small_pairs

    def first_sources(dataset):
        return [x["encoder_token_ids"][0, :4].tolist() for x, _ in dataset.as_numpy_iterator()]

    one, two = (seq2seq_dataset(pairs[:500], tokenizer, seed=7) for _ in range(2))
    epoch_1 = first_sources(one)
    assert epoch_1 == first_sources(two)
    assert epoch_1 != first_sources(one)


def test_a_dataset_of_string_pairs_gives_the_same_batches(small_pairs):
    pairs, tokenizer = small_pairs
    strings = tf.data.Dataset.from_tensor_slices(([s for s, _ in pairs], [t for _, t in pairs]))
    from_list = seq2seq_dataset(pairs, tokenizer, shuffle=False)
    from_dataset = seq2seq_dataset(strings, tokenizer, shuffle=False)
    for (a, a_labels), (b, b_labels) in zip(from_list, from_dataset, strict=True):
        np.testing.assert_array_equal(a["encoder_token_ids"], b["encoder_token_ids"])
        np.testing.assert_array_equal(a_labels, b_labels)


def test_long_sides_are_cut_with_a_warning(small_pairs):
    pairs, tokenizer = small_pairs
    long_pair = (" ".join(["Haus"] * 50) + ".", " ".join(["house"] * 50) + ".")
    with pytest.warns(
        UserWarning, match=r"1 of 2 sources are longer than 16 tokens.*max_source_length"
    ):
        dataset = seq2seq_dataset(
            [long_pair, ("Ja.", "Yes.")], tokenizer, 16, 16, tokens_per_batch=64
        )
    for inputs, labels in dataset.as_numpy_iterator():
        assert inputs["encoder_token_ids"].shape[1] <= 16 and labels.shape[1] <= 16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_source_length": 1}, "`max_source_length` must be an integer >= 2"),
        ({"tokens_per_batch": 100}, r"`tokens_per_batch` \(100\) must hold at least one"),
        ({"bucket_lengths": [16, 8, 128]}, "`bucket_lengths` must be increasing and end at"),
        ({"bucket_lengths": [16, 64]}, "end at max.*= 128"),
    ],
)
def test_bad_sizes_are_refused(small_pairs, kwargs, message):
    pairs, tokenizer = small_pairs
    with pytest.raises(ValueError, match=message):
        seq2seq_dataset(pairs[:10], tokenizer, **kwargs)


def test_bad_pairs_are_refused(small_pairs):
    _, tokenizer = small_pairs
    with pytest.raises(ValueError, match="`pairs` is empty"):
        seq2seq_dataset([], tokenizer)
    with pytest.raises(ValueError, match="item 1 is"):
        seq2seq_dataset([("a", "b"), ("c",)], tokenizer)
    with pytest.raises(ValueError, match="`targets` must be strings"):
        seq2seq_dataset([("a", 3)], tokenizer)
    with pytest.raises(ValueError, match="must be a tfbert BertTokenizer"):
        seq2seq_dataset([("a", "b")], "vocab.txt")


def test_the_dictionary_file_missing_names_the_package(monkeypatch, tmp_path):
    from tfbert.text import corpora

    monkeypatch.setattr(corpora, "DING_DICTIONARY_FILE", os.fspath(tmp_path / "de-en"))
    with pytest.raises(FileNotFoundError, match="apt-get install trans-de-en"):
        corpora.german_english_pairs()
