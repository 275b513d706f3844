import numpy as np
import pytest

from tests.test_case import assert_all_close, run_layer_test
from tfbert.layers import TransformerEncoderBlock

B, T, D = 2, 6, 16


def _data():
    x = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")
    padding_mask = np.ones((B, T), "int32")
    padding_mask[1, 4:] = 0
    return x, padding_mask


@pytest.mark.parametrize("normalize_first", [False, True])
def test_harness(normalize_first):
    x, padding_mask = _data()
    run_layer_test(
        TransformerEncoderBlock,
        {
            "num_heads": 4,
            "intermediate_dim": 32,
            "dropout": 0.1,
            "normalize_first": normalize_first,
        },
        {"inputs": x, "padding_mask": padding_mask},
        expected_output_shape=(B, T, D),
    )


def test_harness_with_attention_scores():
    x, padding_mask = _data()
    run_layer_test(
        TransformerEncoderBlock,
        {"num_heads": 2, "intermediate_dim": 32, "activation": "relu"},
        {"inputs": x, "padding_mask": padding_mask},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=((B, T, D), (B, 2, T, T)),
        float32_outputs=(1,),
    )


@pytest.mark.parametrize("normalize_first", [False, True])
def test_output_positions_equal_gathered_full_output(normalize_first):
    x, padding_mask = _data()
    attention_mask = np.tril(np.ones((B, T, T), "int32"))
    block = TransformerEncoderBlock(
        num_heads=4, intermediate_dim=32, normalize_first=normalize_first
    )
    full = np.asarray(block(x, padding_mask=padding_mask, attention_mask=attention_mask))
    positions = np.array([[0, 3, 5], [2, 2, 1]], "int32")
    partial = block(
        x,
        padding_mask=padding_mask,
        attention_mask=attention_mask,
        output_positions=positions,
    )
    assert_all_close(partial, np.take_along_axis(full, positions[..., None], axis=1), atol=1e-5)


def test_padding_does_not_change_real_positions():
    x, padding_mask = _data()
    block = TransformerEncoderBlock(num_heads=4, intermediate_dim=32)
    out = np.asarray(block(x, padding_mask=padding_mask))
    changed = x.copy()
    changed[1, 4:] = 50.0
    out_changed = np.asarray(block(changed, padding_mask=padding_mask))
    assert_all_close(out_changed[1, :4], out[1, :4], atol=1e-5)


def test_post_ln_output_is_normalized_and_pre_ln_is_not():
    x, _ = _data()
    post = np.asarray(TransformerEncoderBlock(num_heads=4, intermediate_dim=32)(x * 10))
    np.testing.assert_allclose(post.mean(-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(post.std(-1), 1.0, atol=1e-2)
    pre = np.asarray(
        TransformerEncoderBlock(num_heads=4, intermediate_dim=32, normalize_first=True)(x * 10)
    )
    assert np.abs(pre.std(-1) - 1.0).max() > 1.0  # residual stream keeps its scale


def test_bad_configuration_raises():
    x, _ = _data()
    with pytest.raises(ValueError, match="hidden_dim=16, num_heads=5"):
        TransformerEncoderBlock(num_heads=5, intermediate_dim=32)(x)
    with pytest.raises(ValueError, match="Unknown `activation`='swishy'"):
        TransformerEncoderBlock(num_heads=4, intermediate_dim=32, activation="swishy")
    with pytest.raises(ValueError, match="`dropout` must be in"):
        TransformerEncoderBlock(num_heads=4, intermediate_dim=32, dropout=1.5)
    with pytest.raises(ValueError, match=r"`output_positions` must have shape.*\(2,\)"):
        TransformerEncoderBlock(num_heads=4, intermediate_dim=32)(
            x, output_positions=np.array([0, 1])
        )


def test_key_dim_harness_with_fewer_heads_than_the_width():
    # 3 heads of 4 on a width of 16 (structured pruning's shape); the output
    # projection maps the 12 head features back to the width.
    x, padding_mask = _data()
    run_layer_test(
        TransformerEncoderBlock,
        {"num_heads": 3, "key_dim": 4, "intermediate_dim": 8},
        {
            "inputs": x,
            "padding_mask": padding_mask,
            "head_mask": np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], "float32"),
        },
        expected_output_shape=(B, T, D),
    )
    block = TransformerEncoderBlock(num_heads=3, key_dim=4, intermediate_dim=8)
    block(x)
    assert tuple(block.self_attention.query_dense.kernel.shape) == (D, 3, 4)
    assert tuple(block.self_attention.output_dense.kernel.shape) == (3, 4, D)
    assert TransformerEncoderBlock(num_heads=4, intermediate_dim=8).get_config()["key_dim"] is None
    with pytest.raises(ValueError, match=r"`key_dim` must be a positive integer .*key_dim=0"):
        TransformerEncoderBlock(num_heads=3, key_dim=0, intermediate_dim=8)
