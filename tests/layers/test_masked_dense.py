"""MaskedDense and MaskedEinsumDense: plain Keras layers whose kernel is masked."""

import keras
import numpy as np

from tests.test_case import run_layer_test
from tfbert.layers import MaskedDense, MaskedEinsumDense


def _x(*shape):
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def test_harness():
    run_layer_test(
        MaskedDense, {"units": 8}, {"inputs": _x(2, 3, 4)}, expected_output_shape=(2, 3, 8)
    )
    run_layer_test(
        MaskedEinsumDense,
        {"equation": "btd,dnh->btnh", "output_shape": (None, 2, 4), "bias_axes": "nh"},
        {"inputs": _x(2, 3, 8)},
        expected_output_shape=(2, 3, 2, 4),
    )


def test_the_mask_applies_in_every_precision_and_survives_save_load(tmp_path):
    x = _x(4, 6)
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        layer = MaskedDense(5, use_bias=False)
        layer.build((None, 6))
        mask = (np.random.default_rng(1).random((6, 5)) > 0.5).astype("float32")
        layer.kernel_mask.assign(mask)
        kernel = np.asarray(layer._kernel)
        expected = x @ (kernel * mask)
        got = np.asarray(keras.ops.cast(layer(x), "float32"))
        np.testing.assert_allclose(got, expected, atol=1e-5 if policy == "float32" else 0.05)
        # The pruned weights get no gradient.
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.ops.sum(keras.ops.cast(layer(x), "float32"))
        gradient = np.asarray(tape.gradient(loss, layer._kernel.value))
        assert np.all(gradient[mask == 0] == 0) and np.any(gradient[mask == 1] != 0)
    keras.mixed_precision.set_global_policy("float32")

    inputs = keras.Input((6,))
    layer = MaskedDense(5, pruning={"note": "kept in the config"})
    model = keras.Model(inputs, layer(inputs))
    layer.kernel_mask.assign(np.eye(6, 5, dtype="float32"))
    model.save(tmp_path / "masked.keras")
    loaded = keras.saving.load_model(tmp_path / "masked.keras")
    np.testing.assert_array_equal(np.asarray(loaded.layers[-1].kernel_mask), np.eye(6, 5))
    assert loaded.layers[-1].pruning == {"note": "kept in the config"}
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
