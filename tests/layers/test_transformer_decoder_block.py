import numpy as np
import pytest

from tests.test_case import assert_all_close, run_layer_test
from tfbert.layers import TransformerDecoderBlock

B, T, S, D, N = 2, 5, 7, 16, 4


def _data():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(B, T, D)).astype("float32")
    source = rng.normal(size=(B, S, D)).astype("float32")
    source_mask = np.ones((B, S), "int32")
    source_mask[0, 5:] = 0
    return target, source, source_mask


def test_decoder_only_harness():
    target, _, _ = _data()
    run_layer_test(
        TransformerDecoderBlock,
        {"num_heads": N, "intermediate_dim": 32, "dropout": 0.1},
        {"decoder_sequence": target},
        expected_output_shape=(B, T, D),
    )


@pytest.mark.parametrize("normalize_first", [False, True])
def test_encoder_decoder_harness(normalize_first):
    target, source, source_mask = _data()
    run_layer_test(
        TransformerDecoderBlock,
        {"num_heads": N, "intermediate_dim": 32, "normalize_first": normalize_first},
        {
            "decoder_sequence": target,
            "encoder_sequence": source,
            "encoder_padding_mask": source_mask,
        },
        expected_output_shape=(B, T, D),
    )


def test_future_tokens_do_not_change_earlier_outputs():
    target, source, source_mask = _data()
    block = TransformerDecoderBlock(num_heads=N, intermediate_dim=32)
    out = np.asarray(block(target, source, encoder_padding_mask=source_mask))
    changed = target.copy()
    changed[:, 3:] += 5.0
    out_changed = np.asarray(block(changed, source, encoder_padding_mask=source_mask))
    assert_all_close(out_changed[:, :3], out[:, :3], atol=1e-5)
    assert not np.allclose(out_changed[:, 3:], out[:, 3:])


@pytest.mark.parametrize("cross_attention", [False, True])
def test_cached_decoding_equals_full_recomputation(cross_attention):
    target, source, source_mask = _data()
    block = TransformerDecoderBlock(num_heads=N, intermediate_dim=32)
    encoder = {"encoder_sequence": source, "encoder_padding_mask": source_mask}
    if not cross_attention:
        encoder = {}
    full = np.asarray(block(target, **encoder))

    cache = np.zeros((B, 2, T, N, D // N), "float32")
    cross_cache = block.compute_cross_attention_cache(source) if cross_attention else None
    steps = []
    for index in range(T):
        result = block(
            target[:, index : index + 1],
            encoder_padding_mask=source_mask if cross_attention else None,
            self_attention_cache=cache,
            self_attention_cache_index=index,
            cross_attention_cache=cross_cache,
        )
        if cross_attention:
            step, cache, cross_cache = result
        else:
            step, cache = result
        steps.append(np.asarray(step))
    assert_all_close(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_misuse_raises_clear_errors():
    target, source, _ = _data()
    decoder_only = TransformerDecoderBlock(num_heads=N, intermediate_dim=32)
    decoder_only(target)
    with pytest.raises(ValueError, match="built without cross-attention"):
        decoder_only(target, source)
    with pytest.raises(ValueError, match="has no cross-attention"):
        decoder_only.compute_cross_attention_cache(source)
    with pytest.raises(ValueError, match="needs `self_attention_cache_index`"):
        decoder_only(target, self_attention_cache=np.zeros((B, 2, T, N, 4), "float32"))
    seq2seq = TransformerDecoderBlock(num_heads=N, intermediate_dim=32)
    seq2seq(target, source)
    with pytest.raises(ValueError, match="pass `encoder_sequence` or `cross_attention_cache`"):
        seq2seq(target)
