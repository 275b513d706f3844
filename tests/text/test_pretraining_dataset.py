import json
import os
import tempfile

import numpy as np
import pytest

from tfbert.text import movie_reviews, pretraining_dataset, write_pretraining_text
from tfbert.text.pretraining_dataset import IS_NEXT, IS_RANDOM, create_instances, read_documents


@pytest.fixture(scope="module")
def imdb_file():
    path = os.path.join(tempfile.mkdtemp(), "imdb.txt")
    write_pretraining_text([text for text, _ in movie_reviews("imdb")[:120]], path)
    return path


@pytest.fixture(scope="module")
def tokenized_documents(imdb_file, tokenizer):
    documents = read_documents(imdb_file)
    return [tokenizer.tokenize(document).to_list() for document in documents]


def test_batch_format_static_int32(imdb_file, tokenizer):
    dataset = pretraining_dataset(imdb_file, tokenizer, 64, 16, max_predictions=10, seed=0)
    x, y, w = dataset.element_spec
    assert set(x) == {"token_ids", "segment_ids", "padding_mask", "mask_positions"}
    assert {k: tuple(v.shape) for k, v in x.items()} == {
        "token_ids": (16, 64),
        "segment_ids": (16, 64),
        "padding_mask": (16, 64),
        "mask_positions": (16, 10),
    }
    assert all(v.dtype.name == "int32" for v in (*x.values(), *y.values()))
    assert tuple(y["mlm_labels"].shape) == (16, 10) and tuple(y["nsp_labels"].shape) == (16,)
    assert tuple(w["mlm_labels"].shape) == (16, 10)


def test_masking_follows_bert(imdb_file, tokenizer):
    dataset = pretraining_dataset(imdb_file, tokenizer, 64, 16, max_predictions=10, seed=0)
    special = {tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id}
    kept = replaced_by_mask = random = total = eligible = 0
    for x, y, w in dataset:
        ids, positions = x["token_ids"].numpy(), x["mask_positions"].numpy()
        labels, weights = y["mlm_labels"].numpy(), w["mlm_labels"].numpy()
        lengths = x["padding_mask"].numpy().sum(1)
        for row in range(len(ids)):
            real = weights[row] > 0
            assert np.all(positions[row][real] < lengths[row])
            assert not set(labels[row][real].tolist()) & special
            current = ids[row, positions[row][real]]
            kept += np.sum(current == labels[row][real])
            replaced_by_mask += np.sum(current == tokenizer.mask_token_id)
            total += real.sum()
            eligible += lengths[row] - np.sum(np.isin(ids[row][: lengths[row]], list(special)))
    random = total - kept - replaced_by_mask
    # 15% of tokens (rounded per sequence, so a little more on short ones).
    assert 0.13 < total / eligible < 0.17
    assert abs(replaced_by_mask / total - 0.8) < 0.03
    assert abs(kept / total - 0.1) < 0.03
    assert abs(random / total - 0.1) < 0.03


def test_masks_change_every_epoch(imdb_file, tokenizer):
    dataset = pretraining_dataset(imdb_file, tokenizer, 64, 8, seed=0)
    first = [x["mask_positions"].numpy() for x, _, _ in dataset.take(3)]
    second = [x["mask_positions"].numpy() for x, _, _ in dataset.take(3)]
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def _find(haystack, needle):
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start : start + len(needle)] == needle:
            return start
    return -1


def test_next_sentence_pairs(tokenized_documents):
    rng = np.random.default_rng(0)
    instances = create_instances(tokenized_documents, 61, True, 0.1, rng)
    labels = np.array([label for _, _, label in instances])
    assert 0.4 < np.mean(labels == IS_NEXT) < 0.6
    streams = [[t for sentence in document for t in sentence] for document in tokenized_documents]
    checked = found_random = randoms = 0
    for tokens_a, tokens_b, label in instances[:150]:
        assert tokens_a and tokens_b and len(tokens_a) + len(tokens_b) <= 61
        document = next(i for i, stream in enumerate(streams) if _find(stream, tokens_a) >= 0)
        start_b = _find(streams[document], tokens_b)
        if label == IS_NEXT:
            # B continues A in the same document.
            assert start_b > _find(streams[document], tokens_a)
            checked += 1
        else:
            assert label == IS_RANDOM
            randoms += 1
            found_random += start_b >= 0  # a short B can occur anywhere by chance
    assert checked > 50 and found_random / randoms < 0.1


def test_same_seed_same_pairs(tokenized_documents):
    first = create_instances(tokenized_documents, 61, True, 0.1, np.random.default_rng(3))
    again = create_instances(tokenized_documents, 61, True, 0.1, np.random.default_rng(3))
    other = create_instances(tokenized_documents, 61, True, 0.1, np.random.default_rng(4))
    assert first == again and first != other


def test_bad_inputs_raise_clear_errors(imdb_file, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch of 100000"):
        pretraining_dataset(imdb_file, tokenizer, 64, 100000)
    single = tmp_path / "one.txt"
    single.write_text("Just one document. With two sentences.\n")
    with pytest.raises(ValueError, match="needs at least 2 documents"):
        pretraining_dataset(str(single), tokenizer, 64, 1)
    with pytest.raises(ValueError, match="does not exist"):
        pretraining_dataset(str(tmp_path / "missing.txt"), tokenizer, 64, 1)


def _epoch(dataset):
    return [
        {k: v.numpy() for part in batch for k, v in part.items() if k != "nsp_labels"}
        for batch in dataset
    ]


def _same(first, second):
    return all(np.array_equal(a[k], b[k]) for a, b in zip(first, second, strict=True) for k in a)


def test_fixed_seed_reproduces_every_epoch_and_masks_change(imdb_file, tokenizer):
    make = lambda seed: pretraining_dataset(imdb_file, tokenizer, 64, 16, seed=seed)  # noqa: E731
    dataset, again = make(5), make(5)
    first, second = _epoch(dataset), _epoch(dataset)
    assert _same(first, _epoch(again)) and _same(second, _epoch(again))
    assert not _same(first, second)  # dynamic masking: new masks (and order) each epoch
    assert not _same(first, _epoch(make(6)))


def _original_ids(x, y, w):
    """Token ids with the masked positions restored from the labels."""
    ids = np.array(x["token_ids"])
    for row in range(len(ids)):
        real = np.asarray(w["mlm_labels"][row]) > 0
        ids[row, np.asarray(x["mask_positions"][row])[real]] = np.asarray(y["mlm_labels"][row])[
            real
        ]
    return ids


def test_prediction_count_follows_bert(imdb_file, tokenizer):
    dataset = pretraining_dataset(imdb_file, tokenizer, 64, 16, max_predictions=6, seed=1)
    for x, _, w in dataset.take(4):
        tokens = x["padding_mask"].numpy().sum(1)
        expected = np.minimum(6, np.maximum(1, np.round(tokens * 0.15)))
        np.testing.assert_array_equal(w["mlm_labels"].numpy().sum(1), expected)
        positions = x["mask_positions"].numpy()
        for row, count in enumerate(expected.astype(int)):
            assert np.all(np.diff(positions[row, :count]) > 0)  # ascending, distinct


def test_whole_word_masking_masks_all_pieces_of_a_word(imdb_file, tokenizer):
    dataset = pretraining_dataset(
        imdb_file, tokenizer, 64, 16, whole_word_masking=True, max_predictions=10, seed=2
    )
    continues = np.array([token.startswith("##") for token in tokenizer.vocabulary])
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    masked_pieces = split_words = 0
    for x, y, w in dataset:
        ids = _original_ids(x, y, w)
        for row in range(len(ids)):
            real = w["mlm_labels"].numpy()[row] > 0
            chosen = set(x["mask_positions"].numpy()[row][real].tolist())
            for p in chosen:
                # A chosen piece's neighbours inside the same word are chosen too.
                if continues[ids[row, p]]:
                    masked_pieces += 1
                    # (a segment can start mid-word, right after [SEP])
                    split_words += (p - 1) not in chosen and ids[row, p - 1] not in special
                if p + 1 < ids.shape[1] and continues[ids[row, p + 1]]:
                    split_words += (p + 1) not in chosen
    assert masked_pieces > 20 and split_words == 0


def test_tfrecords_round_trip_and_feed_the_same_examples(imdb_file, tokenizer, tmp_path):
    from tfbert.text import read_pretraining_tfrecords, write_pretraining_tfrecords

    paths = write_pretraining_tfrecords(
        imdb_file, tokenizer, tmp_path, sequence_length=64, num_shards=3, dupe_factor=2, seed=0
    )
    assert [os.path.basename(p) for p in paths] == [
        f"pretraining-{i:05d}-of-00003.tfrecord" for i in range(3)
    ]
    # Complete files only: no staging leftovers.
    assert sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(p) for p in paths] + ["pretraining-info.json"]
    )
    with open(tmp_path / "pretraining-info.json", encoding="utf-8") as f:
        info = json.load(f)
    with pytest.raises(FileExistsError, match="already holds pretraining shards"):
        write_pretraining_tfrecords(imdb_file, tokenizer, tmp_path, sequence_length=64)

    records = read_pretraining_tfrecords(
        str(tmp_path / "pretraining-*.tfrecord"), 8, shuffle=False
    )
    x, y, w = records.element_spec
    assert {k: (tuple(v.shape), v.dtype.name) for k, v in x.items()} == {
        "token_ids": ((8, 64), "int32"),
        "segment_ids": ((8, 64), "int32"),
        "padding_mask": ((8, 64), "int32"),
        "mask_positions": ((8, 20), "int32"),
    }
    assert tuple(y["nsp_labels"].shape) == (8,) and w["mlm_labels"].dtype.name == "float32"

    # The records hold the dataset's examples (same seed, same pairs), each
    # masked twice with different masks.
    stored = [(_original_ids(*batch), batch) for batch in records]
    rows = [tuple(row) for ids, _ in stored for row in ids]
    masks = [tuple(row) for _, (x, _, _) in stored for row in x["mask_positions"].numpy()]
    in_memory = pretraining_dataset(imdb_file, tokenizer, 64, 1, seed=0)
    expected = [tuple(row) for batch in in_memory for row in _original_ids(*batch)]
    assert sorted(set(rows)) == sorted(set(expected))
    assert len(rows) >= 2 * len(expected) - 8  # minus the dropped last batch
    assert info["examples"] == sum(info["shards"].values()) == 2 * len(expected)
    assert len(set(zip(rows, masks, strict=True))) > 1.9 * len(set(rows))


def test_tfrecords_feed_pretrainer_fit(imdb_file, tokenizer, tmp_path):
    from tfbert.models import BertBackbone, BertPretrainer
    from tfbert.text import read_pretraining_tfrecords, write_pretraining_tfrecords

    write_pretraining_tfrecords(imdb_file, tokenizer, tmp_path, sequence_length=32, seed=0)
    dataset = read_pretraining_tfrecords(str(tmp_path / "*.tfrecord"), 8, seed=0).take(3)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    pretrainer = BertPretrainer(backbone)
    pretrainer.compile(optimizer="adam")
    history = pretrainer.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["mlm_loss"][0])
    with pytest.raises(ValueError, match="No TFRecord shards match"):
        read_pretraining_tfrecords(str(tmp_path / "nothing-*.tfrecord"), 8)


def test_failed_tfrecord_writing_leaves_nothing(imdb_file, tokenizer, tmp_path):
    from tfbert.text import write_pretraining_tfrecords

    output = tmp_path / "records"
    missing = str(tmp_path / "missing.txt")
    # The first file's examples are written before the second is found missing.
    with pytest.raises(ValueError, match="missing.txt' does not exist"):
        write_pretraining_tfrecords([imdb_file, missing], tokenizer, output, sequence_length=32)
    assert os.listdir(output) == []
    paths = write_pretraining_tfrecords(imdb_file, tokenizer, output, sequence_length=32)
    assert len(paths) == 4 and all(os.path.getsize(p) > 0 for p in paths)
    with pytest.raises(ValueError, match="`num_shards` must be a positive integer; received 0"):
        write_pretraining_tfrecords(imdb_file, tokenizer, tmp_path / "none", num_shards=0)


def test_rows_follow_the_packing_layout(tokenized_documents, tokenizer):
    from tfbert.text.pretraining_dataset import _pack

    rng = np.random.default_rng(0)
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    for next_sentence in (True, False):
        instances = create_instances(tokenized_documents, 64 - 3, next_sentence, 0.1, rng)
        token_ids, segment_ids, labels = _pack(instances, tokenizer, 64, next_sentence)
        assert token_ids.shape == segment_ids.shape == (len(instances), 64)
        for row, (tokens_a, tokens_b, label) in enumerate(instances[:200]):
            b = [*tokens_b, sep] if next_sentence else []
            used = 2 + len(tokens_a) + len(b)
            assert token_ids[row].tolist() == [cls, *tokens_a, sep, *b] + [pad] * (64 - used)
            assert segment_ids[row].tolist() == (
                [0] * (2 + len(tokens_a)) + [1] * len(b) + [0] * (64 - used)
            )
            assert labels[row] == label


def test_invalid_utf8_is_replaced_and_reported(imdb_file, tokenizer, tmp_path):
    with open(imdb_file, "rb") as f:
        lines = f.read().split(b"\n")
    # Scraped text: a Latin-1 e-acute, and a multi-byte character cut short.
    first, second = [i for i, line in enumerate(lines) if b"e" in line][3:5]
    lines[first] = lines[first].replace(b"e", b"\xe9", 1)
    lines[second] = lines[second] + b" \xe2\x80"
    broken = tmp_path / "scraped.txt"
    broken.write_bytes(b"\n".join(lines))
    with pytest.warns(UnicodeWarning) as caught:
        documents = read_documents(str(broken))
    assert len(caught) == 1
    assert str(caught[0].message) == (
        f"Pretraining text file {str(broken)!r}: 2 of {len(lines) - 1} lines are not "
        f"valid UTF-8 (the first is line {first + 1}); their invalid bytes were read as "
        "U+FFFD, which the tokenizer drops. If the file is in another encoding, convert "
        "it to UTF-8 first."
    )
    # Everything else reads as before; the two lines keep their valid text.
    sentences = [sentence for document in documents for sentence in document]
    expected = [sentence for document in read_documents(imdb_file) for sentence in document]
    assert len(sentences) == len(expected)
    differing = [i for i, (a, b) in enumerate(zip(sentences, expected, strict=True)) if a != b]
    row = {line: i for i, line in enumerate(x for x in lines if x.strip())}
    assert differing == [row[lines[first]], row[lines[second]]]
    assert sentences[differing[0]] == expected[differing[0]].replace("e", "\ufffd", 1)
    assert sentences[differing[1]] == expected[differing[1]] + " \ufffd\ufffd"
    # U+FFFD tokenizes as the raw bytes do in the tokenizer itself.
    for index, line in zip(differing, (lines[first], lines[second]), strict=True):
        assert (
            tokenizer.tokenize([sentences[index]]).to_list()
            == tokenizer.tokenize([line]).to_list()
        )
    with pytest.warns(UnicodeWarning, match="scraped.txt"):
        dataset = pretraining_dataset(str(broken), tokenizer, 32, 8, seed=0)
    assert next(iter(dataset))[0]["token_ids"].shape == (8, 32)
