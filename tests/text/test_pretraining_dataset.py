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
