import numpy as np
import pytest

from tests.test_case import run_layer_test
from tfbert.layers import BertEmbeddings


def test_harness_on_real_tokens(real_inputs):
    run_layer_test(
        BertEmbeddings,
        {"vocabulary_size": 30522, "hidden_dim": 16, "max_sequence_length": 64},
        {"token_ids": real_inputs["token_ids"], "segment_ids": real_inputs["segment_ids"]},
        expected_output_shape=(8, 32, 16),
    )


def test_sum_of_three_embeddings_then_layer_norm(real_inputs):
    layer = BertEmbeddings(vocabulary_size=30522, hidden_dim=8, max_sequence_length=64)
    ids = real_inputs["token_ids"][:2]
    segments = np.zeros_like(ids)
    segments[:, 5:] = 1
    out = np.asarray(layer(ids, segments))
    summed = (
        layer.token_embedding.embeddings.numpy()[ids]
        + layer.segment_embedding.embeddings.numpy()[segments]
        + layer.position_embedding.position_embeddings.numpy()[None, : ids.shape[1]]
    )
    mean = summed.mean(-1, keepdims=True)
    variance = summed.var(-1, keepdims=True)
    np.testing.assert_allclose(out, (summed - mean) / np.sqrt(variance + 1e-12), atol=1e-5)
    # Without segment ids, segment 0 everywhere.
    np.testing.assert_allclose(
        np.asarray(layer(ids)), np.asarray(layer(ids, np.zeros_like(ids))), atol=1e-6
    )


def test_out_of_range_ids_raise(real_inputs):
    layer = BertEmbeddings(vocabulary_size=1000, hidden_dim=8)
    with pytest.raises(
        ValueError,
        match=r"`token_ids` must be in \[0, vocabulary_size=1000\); received a value of \d+",
    ):
        layer(real_inputs["token_ids"])
    layer = BertEmbeddings(vocabulary_size=30522, hidden_dim=8)
    with pytest.raises(
        ValueError, match=r"`segment_ids` must be in \[0, num_segments=2\); received a value of 2"
    ):
        layer(real_inputs["token_ids"], np.full_like(real_inputs["token_ids"], 2))
    with pytest.raises(
        ValueError, match=r"`token_ids` must have shape \(batch, sequence_length\)"
    ):
        BertEmbeddings(vocabulary_size=30522, hidden_dim=8)(real_inputs["token_ids"][0])
