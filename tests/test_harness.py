"""The harness in tests/test_case.py fails the layers it is meant to catch."""

import keras
import numpy as np
import pytest

from tests.test_case import run_layer_test


@keras.saving.register_keras_serializable(package="tests")
class _ForgetsItsPolicy(keras.layers.Layer):
    """A dense layer whose sublayer is built without `dtype=self.dtype_policy`."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units)

    def call(self, inputs):
        return keras.ops.cast(self.dense(inputs), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_a_sublayer_that_ignores_the_dtype_policy_fails_the_harness():
    # Its output is bfloat16 (cast at the end), so only the policy check sees it.
    inputs = {"inputs": np.random.default_rng(0).normal(size=(2, 3)).astype("float32")}
    with pytest.raises(AssertionError, match="sublayers ignore the layer's dtype policy"):
        run_layer_test(_ForgetsItsPolicy, {"units": 4}, inputs, expected_output_shape=(2, 4))
