"""The shared test harness: what every tfbert layer must do."""

import os
import tempfile

import keras
import numpy as np
from keras import ops


def _to_numpy(structure):
    return keras.tree.map_structure(lambda x: np.asarray(ops.convert_to_numpy(x)), structure)


def assert_all_close(actual, expected, atol=1e-6, rtol=0.0, message=""):
    """Element-wise closeness of two nested structures of arrays."""
    # Lists and tuples compare alike (a functional model returns lists).
    actual = keras.tree.flatten(_to_numpy(actual))
    expected = keras.tree.flatten(_to_numpy(expected))
    assert len(actual) == len(expected), f"{len(actual)} vs {len(expected)} arrays"
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(
            a.astype("float64"), e.astype("float64"), atol=atol, rtol=rtol, err_msg=message
        )


def _symbolic_inputs(input_data):
    return {
        name: keras.Input(shape=value.shape[1:], dtype=str(value.dtype), name=name)
        for name, value in input_data.items()
    }


def _first_float(structure):
    for tensor in keras.tree.flatten(structure):
        if "float" in keras.backend.standardize_dtype(tensor.dtype):
            return tensor
    raise AssertionError("The layer returned no floating-point output to train on.")


def run_layer_test(
    layer_cls,
    init_kwargs: dict,
    input_data: dict,
    call_kwargs: dict | None = None,
    expected_output_shape=None,
    run_training_check: bool = True,
    run_mixed_precision_check: bool = True,
    float32_outputs: tuple = (),
    untrained_weights: tuple = (),
):
    """Checks config round trip, eager and symbolic calls, `.keras` save/load
    with equal outputs, XLA (`jit_compile=True`) equal to eager, one `fit`
    step, and a mixed_bfloat16 run.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor kwargs.
        input_data: tensor arguments of `call` by name (NumPy arrays with a
            batch dimension first).
        call_kwargs: non-tensor `call` arguments (flags).
        expected_output_shape: shape or nested structure of shapes of the
            eager output.
        float32_outputs: indices (in flattened output order) that stay float32
            under mixed precision by design (logits, attention probabilities).
        untrained_weights: weight names (`variable.path` suffixes) that get no
            gradient in this call by design.
    """
    call_kwargs = call_kwargs or {}

    # Config round trip.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config

    # Eager call.
    eager_output = layer(**input_data, **call_kwargs)
    if expected_output_shape is not None:
        shapes = keras.tree.map_structure(lambda x: tuple(x.shape), eager_output)
        assert shapes == expected_output_shape, f"{shapes} != {expected_output_shape}"

    # Symbolic call: same output structure, dtypes and non-batch shapes.
    inputs = _symbolic_inputs(input_data)
    symbolic_output = layer_cls(**init_kwargs)(**inputs, **call_kwargs)
    keras.tree.assert_same_structure(symbolic_output, eager_output)
    for symbolic, eager in zip(
        keras.tree.flatten(symbolic_output), keras.tree.flatten(eager_output), strict=False
    ):
        assert keras.backend.standardize_dtype(symbolic.dtype) == (
            keras.backend.standardize_dtype(eager.dtype)
        )
        assert all(
            s is None or s == e for s, e in zip(symbolic.shape, eager.shape, strict=True)
        ), f"symbolic shape {symbolic.shape} vs eager {eager.shape}"

    # Functional model around a fresh layer: .keras save/load keeps outputs.
    layer = layer_cls(**init_kwargs)
    model = keras.Model(inputs, layer(**inputs, **call_kwargs))
    expected = model(input_data, training=False)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    assert_all_close(restored(input_data, training=False), expected, atol=0.0)

    # XLA: the compiled inference function agrees with eager execution.
    model.compile(jit_compile=True)
    batch_size = len(next(iter(input_data.values())))
    compiled = model.predict(input_data, batch_size=batch_size, verbose=0)
    assert_all_close(compiled, expected, atol=1e-5, message="jit_compile=True vs eager")

    # One fit step changes every weight that should learn.
    if run_training_check:
        training_model = keras.Model(inputs, _first_float(model.outputs))
        before = {w.path: np.array(w.numpy()) for w in training_model.trainable_weights}
        target = np.ones(tuple(_first_float(eager_output).shape), "float32")
        training_model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        history = training_model.fit(
            input_data, target, epochs=1, batch_size=len(target), verbose=0
        )
        assert np.isfinite(history.history["loss"][0])
        for weight in training_model.trainable_weights:
            if weight.path.endswith(untrained_weights) and untrained_weights:
                continue
            assert not np.array_equal(before[weight.path], weight.numpy()), (
                f"{weight.path} did not change after a training step"
            )

    # Mixed precision: float32 variables, bfloat16 compute, finite outputs.
    if run_mixed_precision_check:
        layer = layer_cls(**{**init_kwargs, "dtype": "mixed_bfloat16"})
        output = layer(**input_data, **call_kwargs)
        assert all(w.dtype == "float32" for w in layer.weights)
        for index, tensor in enumerate(keras.tree.flatten(output)):
            if "float" not in keras.backend.standardize_dtype(tensor.dtype):
                continue
            expected_dtype = "float32" if index in float32_outputs else "bfloat16"
            assert keras.backend.standardize_dtype(tensor.dtype) == expected_dtype, (
                f"output {index} is {tensor.dtype}, expected {expected_dtype}"
            )
            assert np.all(np.isfinite(ops.convert_to_numpy(ops.cast(tensor, "float32"))))
    return eager_output
