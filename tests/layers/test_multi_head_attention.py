import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.test_case import assert_all_close, run_layer_test
from tfbert.layers import MultiHeadAttention

B, T, S, D, N = 2, 6, 7, 16, 4


def _data(seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(B, T, D)).astype("float32")
    value = rng.normal(size=(B, S, D)).astype("float32")
    padding_mask = np.ones((B, S), "int32")
    padding_mask[1, 4:] = 0
    return query, value, padding_mask


def test_self_attention_harness():
    query, _, _ = _data()
    mask = np.ones((B, T), "int32")
    mask[0, 3:] = 0
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": N, "key_dim": D // N, "dropout": 0.1},
        {"query": query, "padding_mask": mask},
        expected_output_shape=(B, T, D),
    )


def test_cross_attention_with_scores_harness():
    query, value, padding_mask = _data()
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": N, "key_dim": 3, "value_dim": 5, "output_dim": 8},
        {"query": query, "value": value, "padding_mask": padding_mask},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=((B, T, 8), (B, N, T, S)),
        float32_outputs=(1,),
    )


def _copy_weights_to_keras(ours, theirs):
    for mine, other in (
        (ours.query_dense, theirs._query_dense),
        (ours.key_dense, theirs._key_dense),
        (ours.value_dense, theirs._value_dense),
        (ours.output_dense, theirs._output_dense),
    ):
        for a, b in zip(mine.weights, other.weights, strict=True):
            assert a.shape == b.shape
            b.assign(a)


@pytest.mark.parametrize("causal", [False, True])
def test_equals_keras_multi_head_attention(causal):
    query, value, padding_mask = _data()
    if causal:
        value = query[:, :, :]
        padding_mask = padding_mask[:, :T]
    ours = MultiHeadAttention(num_heads=N, key_dim=D // N)
    theirs = keras.layers.MultiHeadAttention(num_heads=N, key_dim=D // N)
    ours(query, value)
    theirs(query, value)
    _copy_weights_to_keras(ours, theirs)

    output, scores = ours(
        query,
        value,
        padding_mask=padding_mask,
        use_causal_mask=causal,
        return_attention_scores=True,
    )
    attention_mask = np.broadcast_to(padding_mask[:, None, :].astype(bool), (B, T, value.shape[1]))
    expected, expected_scores = theirs(
        query,
        value,
        attention_mask=attention_mask,
        use_causal_mask=causal,
        return_attention_scores=True,
    )
    assert_all_close(output, expected, atol=1e-5)
    assert_all_close(scores, expected_scores, atol=1e-6)


def test_padding_mask_equals_explicit_attention_mask():
    query, value, padding_mask = _data()
    layer = MultiHeadAttention(num_heads=N, key_dim=4)
    implicit = layer(query, value, padding_mask=padding_mask)
    explicit = layer(query, value, attention_mask=np.repeat(padding_mask[:, None, :], T, axis=1))
    assert_all_close(implicit, explicit, atol=1e-6)


def test_padded_keys_do_not_change_output():
    query, value, padding_mask = _data()
    layer = MultiHeadAttention(num_heads=N, key_dim=4)
    output = layer(query, value, padding_mask=padding_mask)
    changed = value.copy()
    changed[1, 4:] = 100.0  # only padded positions of example 1
    assert_all_close(layer(query, changed, padding_mask=padding_mask), output, atol=1e-6)


def test_causal_mask_hides_future_tokens():
    query, _, _ = _data()
    layer = MultiHeadAttention(num_heads=N, key_dim=4)
    output = layer(query, use_causal_mask=True)
    changed = query.copy()
    changed[:, 4:] = -3.0
    changed_output = layer(changed, use_causal_mask=True)
    assert_all_close(changed_output[:, :4], output[:, :4], atol=1e-6)
    assert not np.allclose(changed_output[:, 4:], output[:, 4:])


def test_cached_decoding_equals_full_recomputation():
    query, _, _ = _data()
    layer = MultiHeadAttention(num_heads=N, key_dim=4)
    full = layer(query, use_causal_mask=True)
    cache = np.zeros((B, 2, T, N, 4), "float32")
    steps = []
    for index in range(T):
        step, cache = layer(
            query[:, index : index + 1], use_causal_mask=True, cache=cache, cache_index=index
        )
        steps.append(step)
    assert_all_close(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_head_mask_scales_each_head():
    query, value, padding_mask = _data()
    layer = MultiHeadAttention(num_heads=N, key_dim=4)
    base = layer(query, value, padding_mask=padding_mask)
    assert_all_close(
        layer(query, value, padding_mask=padding_mask, head_mask=np.ones(N, "float32")),
        base,
        atol=1e-6,
    )
    # All heads off: only the output bias is left.
    off = layer(query, value, head_mask=np.zeros((B, N), "float32"))
    bias = layer.output_dense.bias.numpy()
    assert_all_close(off, np.broadcast_to(bias, (B, T, D)), atol=1e-6)
    # Per-example mask: example 0 unchanged, example 1 differs.
    per_example = layer(
        query,
        value,
        padding_mask=padding_mask,
        head_mask=np.array([[1, 1, 1, 1], [1, 0, 1, 1]], "float32"),
    )
    assert_all_close(per_example[0], base[0], atol=1e-6)
    assert not np.allclose(per_example[1], base[1])


def test_head_mask_gradient_scores_heads():
    query, value, padding_mask = _data()
    layer = MultiHeadAttention(num_heads=N, key_dim=4)
    head_mask = tf.Variable(tf.ones(N))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(query, value, padding_mask=padding_mask, head_mask=head_mask))
    gradient = tape.gradient(loss, head_mask)
    assert gradient.shape == (N,)
    assert np.all(np.abs(gradient.numpy()) > 0)


def test_dropout_only_in_training():
    query, _, _ = _data()
    layer = MultiHeadAttention(num_heads=N, key_dim=4, dropout=0.5)
    assert_all_close(layer(query, training=False), layer(query, training=False), atol=0.0)
    assert not np.allclose(layer(query, training=True), layer(query, training=False))


def test_bad_inputs_raise_clear_errors():
    query, value, padding_mask = _data()
    layer = MultiHeadAttention(num_heads=N, key_dim=4)
    with pytest.raises(ValueError, match=r"`padding_mask` must have rank 2.*\(2, 1, 7\)"):
        layer(query, value, padding_mask=padding_mask[:, None, :])
    with pytest.raises(ValueError, match=r"`attention_mask` must have rank 3.*\(2, 7\)"):
        layer(query, value, attention_mask=padding_mask)
    with pytest.raises(ValueError, match=r"`head_mask` must have shape.*num_heads=4.*\(3,\)"):
        layer(query, value, head_mask=np.ones(3, "float32"))
    with pytest.raises(ValueError, match="`cache_index` was given without a `cache`"):
        layer(query, cache_index=0)
    with pytest.raises(
        ValueError, match=r"`query` must have shape \(batch, length, features\).*\(2, 16\)"
    ):
        MultiHeadAttention(num_heads=N, key_dim=4)(query[:, 0])
    with pytest.raises(
        ValueError, match="`num_heads` must be a positive integer; received num_heads=0"
    ):
        MultiHeadAttention(num_heads=0, key_dim=4)
