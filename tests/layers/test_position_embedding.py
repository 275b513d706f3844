import numpy as np
import pytest

from tests.test_case import run_layer_test
from tfbert.layers import PositionEmbedding, SinusoidalPositionEncoding


def test_position_embedding_harness():
    x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    run_layer_test(
        PositionEmbedding,
        {"sequence_length": 16},
        {"inputs": x},
        expected_output_shape=(2, 5, 8),
    )


def test_position_embedding_rows_and_start_index():
    layer = PositionEmbedding(sequence_length=10)
    x = np.zeros((3, 4, 6), "float32")
    out = np.asarray(layer(x))
    table = layer.position_embeddings.numpy()
    np.testing.assert_array_equal(out[2], table[:4])
    np.testing.assert_array_equal(np.asarray(layer(x[:, :1], start_index=7))[0, 0], table[7])


def test_too_long_sequence_raises():
    with pytest.raises(ValueError, match=r"length 12 exceeds max_sequence_length=10"):
        PositionEmbedding(sequence_length=10)(np.zeros((1, 12, 4), "float32"))


def test_sinusoidal_harness_and_formula():
    x = np.zeros((2, 5, 8), "float32")
    out = run_layer_test(
        SinusoidalPositionEncoding,
        {},
        {"inputs": x},
        expected_output_shape=(2, 5, 8),
        run_training_check=False,
    )
    out = np.asarray(out)
    position, i = 3, 2  # feature pair 2 -> features 4 (sin) and 5 (cos)
    angle = position / 10000 ** (2 * i / 8)
    np.testing.assert_allclose(out[0, position, 4], np.sin(angle), atol=1e-6)
    np.testing.assert_allclose(out[1, position, 5], np.cos(angle), atol=1e-6)
    shifted = np.asarray(SinusoidalPositionEncoding()(x[:, :1], start_index=3))
    np.testing.assert_allclose(shifted[0, 0], out[0, 3], atol=1e-6)


def test_sinusoidal_needs_even_width():
    with pytest.raises(ValueError, match="even, known feature size"):
        SinusoidalPositionEncoding()(np.zeros((1, 2, 5), "float32"))
