"""The shared test harness: what every tfbert layer and model must do."""

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


def assert_follows_dtype_policy(layer, policy="mixed_bfloat16"):
    """Every sublayer of `layer` computes under `policy`: a sublayer built
    without `dtype=self.dtype_policy` would run in float32 unnoticed, its
    outputs cast back by the next layer."""
    ignoring = [
        f"{sublayer.path or sublayer.name} ({sublayer.dtype_policy.name})"
        for sublayer in layer._flatten_layers(include_self=True, recursive=True)
        if sublayer.dtype_policy.name != policy
        and not isinstance(sublayer, keras.layers.InputLayer)
    ]
    assert not ignoring, f"sublayers ignore the layer's dtype policy {policy!r}: {ignoring}"


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

    # Mixed precision: every sublayer under the policy, float32 variables,
    # bfloat16 compute, finite outputs.
    if run_mixed_precision_check:
        layer = layer_cls(**{**init_kwargs, "dtype": "mixed_bfloat16"})
        output = layer(**input_data, **call_kwargs)
        assert_follows_dtype_policy(layer)
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


def run_model_test(
    build,
    input_data: dict,
    targets=None,
    sample_weight=None,
    float32_outputs: tuple = (),
    mixed_precision_atol: float = 0.1,
    untrained_weights: tuple = (),
):
    """What every tfbert model must do: config round trip, `.keras` save/load
    with equal outputs, XLA (`jit_compile=True`) equal to eager, mixed
    precision close to float32 with every layer under the policy, and one
    `fit` step (the model's own default loss) that changes every trainable
    weight.

    Args:
        build: callable; `build(dtype=None)` returns a fresh built model
            (`dtype` a Keras dtype policy for the whole model, or None).
        input_data: dict of NumPy arrays (batch first), real data.
        targets: labels for the `fit` step (None skips it).
        sample_weight: optional `fit` sample weights.
        float32_outputs: indices (flattened output order) that stay float32
            under mixed precision (logits).
        mixed_precision_atol: allowed difference between bfloat16 and float32
            outputs of the same weights (plus 1% of the value).
        untrained_weights: weight path suffixes that get no gradient from
            the model's loss by design (an unused pooler).

    Returns:
        The model's eager outputs.
    """
    model = build()
    expected = model(input_data, training=False)

    config = model.get_config()
    assert type(model).from_config(config).get_config() == config

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert_all_close(restored(input_data, training=False), expected, atol=0.0)

    compiled = build()
    compiled.set_weights(model.get_weights())
    compiled.compile(jit_compile=True)
    batch_size = len(next(iter(input_data.values())))
    outputs = compiled.predict(input_data, batch_size=batch_size, verbose=0)
    assert_all_close(outputs, expected, atol=1e-5, rtol=1e-6, message="jit_compile=True vs eager")

    mixed = build(dtype="mixed_bfloat16")
    mixed.set_weights(model.get_weights())
    assert_follows_dtype_policy(mixed)
    with tempfile.TemporaryDirectory() as folder:
        mixed.save(os.path.join(folder, "mixed.keras"))
        assert_follows_dtype_policy(keras.saving.load_model(os.path.join(folder, "mixed.keras")))
    assert all(w.dtype == "float32" for w in mixed.weights)
    mixed_outputs = keras.tree.flatten(mixed(input_data, training=False))
    for index, (low, full) in enumerate(
        zip(mixed_outputs, keras.tree.flatten(expected), strict=True)
    ):
        if "float" not in keras.backend.standardize_dtype(low.dtype):
            continue
        dtype = "float32" if index in float32_outputs else "bfloat16"
        assert keras.backend.standardize_dtype(low.dtype) == dtype, (index, low.dtype)
        np.testing.assert_allclose(
            _to_numpy(ops.cast(low, "float32")),
            _to_numpy(full),
            atol=mixed_precision_atol,
            rtol=0.01,
            err_msg=f"mixed_bfloat16 vs float32, output {index}",
        )

    if targets is not None:
        trained = build()
        trained.set_weights(model.get_weights())
        trained.compile(optimizer=keras.optimizers.SGD(0.1))
        before = [np.array(w.numpy()) for w in trained.trainable_weights]
        history = trained.fit(
            input_data,
            targets,
            sample_weight=sample_weight,
            batch_size=batch_size,
            epochs=1,
            verbose=0,
        )
        assert np.isfinite(history.history["loss"][0])
        for weight, old in zip(trained.trainable_weights, before, strict=True):
            if untrained_weights and weight.path.endswith(untrained_weights):
                continue
            assert not np.array_equal(old, weight.numpy()), (
                f"{weight.path} did not change after a training step"
            )
    return expected


# The end of a script comparing training on one device with MirroredStrategy:
# the script defines `strategy`, `build()` (a compiled model, seeded) and
# `run(model)` (its fit history and evaluation), and may set `extra` (a dict).
MIRRORED_COMPARISON = """
reference = build()
initial = reference.get_weights()
one_device = run(reference)
with strategy.scope():
    mirrored = build()
mirrored.set_weights(initial)
two_replicas = run(mirrored)
difference = max(float(np.max(np.abs(a - b)))
                 for a, b in zip(reference.get_weights(), mirrored.get_weights(), strict=True))
moved = max(float(np.max(np.abs(a - b)))
            for a, b in zip(initial, reference.get_weights(), strict=True))
print("RESULT " + json.dumps({
    "replicas": mirrored.distribute_strategy.num_replicas_in_sync,
    "difference": difference, "moved": moved,
    "one_device": one_device, "two_replicas": two_replicas,
    **globals().get("extra", {}),
}))
"""


def run_mirrored_comparison(script: str, *args: str) -> dict:
    """Runs `script` + `MIRRORED_COMPARISON` in a fresh Python process (the
    CPU must be split before TensorFlow starts); returns its RESULT dict."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", script + MIRRORED_COMPARISON, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])
