import numpy as np
import pytest

from tfbert.layers import compute_causal_mask, merge_attention_masks


def test_causal_mask_is_lower_triangular():
    mask = np.asarray(compute_causal_mask(2, 4, 4))
    assert mask.shape == (2, 4, 4)
    np.testing.assert_array_equal(mask[1], np.tril(np.ones((4, 4), bool)))


def test_causal_mask_with_cache_index_offsets_queries():
    # Two new queries at positions 3 and 4 of a cache of 6 keys.
    mask = np.asarray(compute_causal_mask(1, 2, 6, cache_index=3))
    np.testing.assert_array_equal(mask[0], [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]])


def test_merge_combines_all_masks():
    padding = np.array([[1, 1, 0]])
    attention = np.array([[[1, 0, 1], [1, 1, 1], [0, 1, 1]]])
    causal = compute_causal_mask(1, 3, 3)
    merged = np.asarray(merge_attention_masks(padding, attention, causal))
    np.testing.assert_array_equal(merged[0], [[1, 0, 0], [1, 1, 0], [0, 1, 0]])


def test_merge_padding_only_broadcasts_over_queries():
    merged = np.asarray(merge_attention_masks(np.array([[1, 0]])))
    assert merged.shape == (1, 1, 2) and merged.dtype == bool
    assert merge_attention_masks() is None


def test_wrong_rank_names_mask_and_shape():
    with pytest.raises(
        ValueError, match=r"`padding_mask` must have rank 2.*received shape \(3,\)"
    ):
        merge_attention_masks(np.ones(3))
    with pytest.raises(ValueError, match=r"`attention_mask` must have rank 3.*\(1, 3\)"):
        merge_attention_masks(attention_mask=np.ones((1, 3)))
