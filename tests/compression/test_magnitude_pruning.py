"""Magnitude pruning for Keras 3: schedules equal tfmot's, masks hold through
fit, save/load, strip_pruning, a distribution strategy and export."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.test_case import assert_all_close
from tfbert.compression import (
    ConstantSparsity,
    PolynomialDecay,
    PruningSummaries,
    UpdatePruningStep,
    prune_low_magnitude,
    strip_pruning,
)
from tfbert.compression.magnitude_pruning import kernel_matrix, magnitude_mask, masked_layers
from tfbert.layers import MaskedDense
from tfbert.models import BertBackbone, BertClassifier


def small_classifier(vocabulary_size):
    keras.utils.set_random_seed(7)
    backbone = BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=128,
    )
    return BertClassifier(backbone, num_classes=2)


@pytest.fixture()
def data(real_inputs, rotten_tomatoes):
    labels = np.array([label for _, label in rotten_tomatoes[:8]])
    return real_inputs, labels


def kernels(model):
    """Effective (masked) kernel of every pruning-wrapped layer, by path."""
    return {
        path: keras.ops.convert_to_numpy(layer.kernel)
        for path, layer in masked_layers(model).items()
    }


def zero_fraction(array):
    return float(np.mean(np.asarray(array) == 0))


def test_schedules_equal_tfmot_step_by_step(monkeypatch):
    # tfmot sets TF_USE_LEGACY_KERAS=1 at import; the subprocesses of later
    # tests must not inherit it.
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", os.environ.get("TF_USE_LEGACY_KERAS", "0"))
    from tensorflow_model_optimization.sparsity import keras as tfmot_sparsity

    pairs = [
        (
            PolynomialDecay(0.1, 0.8, 10, 90, power=3, frequency=7),
            tfmot_sparsity.PolynomialDecay(0.1, 0.8, 10, 90, power=3, frequency=7),
        ),
        (
            ConstantSparsity(0.6, 5, end_step=50, frequency=4),
            tfmot_sparsity.ConstantSparsity(0.6, 5, end_step=50, frequency=4),
        ),
        (ConstantSparsity(0.3, 0), tfmot_sparsity.ConstantSparsity(0.3, 0)),
    ]
    for ours, theirs in pairs:
        for step in range(0, 120):
            should, sparsity = ours(step)
            their_should, their_sparsity = theirs(np.int64(step))
            assert should == bool(their_should), (type(ours).__name__, step)
            assert sparsity == pytest.approx(float(their_sparsity), abs=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ConstantSparsity(1.0, 0), "`target_sparsity` must be a fraction in [0, 1)"),
        (lambda: PolynomialDecay(-0.1, 0.5, 0, 10), "received initial_sparsity=-0.1"),
        (
            lambda: PolynomialDecay(0.0, 0.5, 10, 5),
            "`end_step` must be an integer >= begin_step=10; received end_step=5",
        ),
        (
            lambda: ConstantSparsity(0.5, 10, end_step=3),
            "-1 (no end) or an integer >= begin_step=10",
        ),
        (
            lambda: PolynomialDecay(0.0, 0.5, 0, 10, frequency=0),
            "`frequency` must be an integer >= 1",
        ),
    ],
)
def test_bad_schedules_name_the_argument(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert message in str(error.value)


def test_the_schedule_reaches_its_exact_sparsity_at_its_steps(tokenizer, data):
    x, y = data
    schedule = PolynomialDecay(0.0, 0.75, begin_step=2, end_step=6, power=1, frequency=2)
    pruned = prune_low_magnitude(small_classifier(tokenizer.vocabulary_size), schedule)
    pruned.compile(optimizer=keras.optimizers.Adam(1e-3))
    seen = {}

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy()) - 1  # the step just run
            seen[step] = {path: zero_fraction(k) for path, k in kernels(self.model).items()}

    pruned.fit(x, y, batch_size=1, epochs=1, callbacks=[UpdatePruningStep(), Record()], verbose=0)
    sizes = {path: layer.kernel_mask.shape for path, layer in masked_layers(pruned).items()}
    for step, sparsity in [
        (0, 0.0),
        (1, 0.0),
        (2, 0.0),
        (3, 0.0),
        (4, 0.375),
        (5, 0.375),
        (6, 0.75),
        (7, 0.75),
    ]:
        for path, fraction in seen[step].items():
            size = int(np.prod(sizes[path]))
            expected = (size - round(size * (1 - sparsity))) / size
            assert fraction == pytest.approx(expected, abs=1e-9), (step, path)


def test_pruned_weights_stay_zero_through_fit_save_load_and_strip(tmp_path, tokenizer, data):
    x, y = data
    classifier = small_classifier(tokenizer.vocabulary_size)
    pruned = prune_low_magnitude(classifier, ConstantSparsity(0.5, begin_step=0, frequency=100))
    assert type(pruned) is BertClassifier
    assert (
        len(masked_layers(pruned)) == 2 * 6 + 2
    )  # Q, K, V, output, 2 FFN per block; pooler; logits
    assert_all_close(pruned(x), classifier(x), atol=1e-6)  # masks start all ones

    pruned.compile(optimizer=keras.optimizers.Adam(1e-2))
    pruned.fit(x, y, batch_size=2, epochs=2, callbacks=[UpdatePruningStep()], verbose=0)
    masks = {path: np.asarray(layer.kernel_mask) for path, layer in masked_layers(pruned).items()}
    trained = kernels(pruned)
    for path, kernel in trained.items():
        assert zero_fraction(masks[path]) == pytest.approx(0.5, abs=0.01), path
        assert np.all(kernel[masks[path] == 0] == 0), path  # exactly zero after 8 Adam steps
        assert np.any(kernel[masks[path] == 1] != 0), path
    embeddings = pruned.backbone.embeddings.token_embedding.embeddings
    assert zero_fraction(embeddings) == 0.0  # embeddings, LayerNorm and biases are left alone

    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    assert type(loaded) is BertClassifier
    assert int(loaded.optimizer.iterations.numpy()) == 8  # the schedule resumes here
    assert_all_close(loaded(x), pruned(x), atol=1e-6)
    for path, layer in masked_layers(loaded).items():
        np.testing.assert_array_equal(np.asarray(layer.kernel_mask), masks[path])

    loaded.fit(x, y, batch_size=2, epochs=1, callbacks=[UpdatePruningStep()], verbose=0)
    for path, kernel in kernels(loaded).items():
        assert np.all(kernel[masks[path] == 0] == 0), path

    stripped = strip_pruning(loaded)
    assert type(stripped) is BertClassifier
    assert stripped.get_config() == classifier.get_config()
    assert not masked_layers(stripped)
    assert len(stripped.weights) == len(classifier.weights)
    assert_all_close(stripped(x), loaded(x), atol=1e-5)
    query = stripped.backbone.transformer_layers[0].self_attention.query_dense.kernel
    assert zero_fraction(query) == pytest.approx(0.5, abs=0.01)
    stripped.save(tmp_path / "stripped.keras")
    assert_all_close(keras.saving.load_model(tmp_path / "stripped.keras")(x), stripped(x))


def test_two_of_four_and_blocks_hold_in_every_kernel(tokenizer, data):
    x, y = data
    classifier = small_classifier(tokenizer.vocabulary_size)
    for settings in ({"sparsity_m_by_n": (2, 4)}, {"block_size": (1, 16)}):
        pruned = prune_low_magnitude(
            classifier, ConstantSparsity(0.5, 0), pruning_policy="transformer_layer", **settings
        )
        pruned.compile(optimizer="adam")
        pruned.fit(x, y, batch_size=4, epochs=1, callbacks=[UpdatePruningStep()], verbose=0)
        layers = masked_layers(pruned)
        assert len(layers) == 12 and all("transformer_layer" in path for path in layers)
        for path, layer in layers.items():
            order, inputs = kernel_matrix(layer)
            kernel = np.transpose(keras.ops.convert_to_numpy(layer.kernel), order)
            matrix = kernel.reshape(int(np.prod(kernel.shape[:inputs])), -1)  # (inputs, outputs)
            if "sparsity_m_by_n" in settings:
                groups = (matrix != 0).T.reshape(matrix.shape[1], -1, 4)
                assert np.all(groups.sum(-1) == 2), path  # 2 of every 4 inputs are zero
            else:
                blocks = (matrix != 0).reshape(matrix.shape[0], -1, 16)
                assert np.all(blocks.all(-1) | ~blocks.any(-1)), path  # whole blocks go
                assert zero_fraction(matrix) == pytest.approx(0.5), path


def test_magnitude_mask_keeps_the_largest_weights():
    kernel = np.array([[0.1, -3.0], [2.0, 0.05], [-0.2, 1.0], [4.0, -0.3]])
    np.testing.assert_array_equal(magnitude_mask(kernel, 0.5), [[0, 1], [1, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(
        magnitude_mask(kernel, 0.0, sparsity_m_by_n=(2, 4)), [[0, 1], [1, 0], [0, 1], [1, 0]]
    )
    np.testing.assert_array_equal(
        magnitude_mask(kernel, 0.5, block_size=(2, 1)).T,
        [[0, 0, 1, 1], [1, 1, 0, 0]],  # block means 1.05, 2.1 | 1.525, 0.65
    )


def test_bad_pruning_arguments_are_refused(tokenizer):
    classifier = small_classifier(tokenizer.vocabulary_size)
    schedule = ConstantSparsity(0.5, 0)
    cases = [
        (
            {"sparsity_m_by_n": (4, 4)},
            "m must be smaller than n, e.g. (2, 4); received sparsity_m_by_n=(4, 4)",
        ),
        ({"sparsity_m_by_n": (2, 4), "block_size": (1, 4)}, "leave `block_size` at (1, 1)"),
        ({"block_size": (0, 4)}, "`block_size` must be two positive integers"),
        ({"pruning_policy": "no_such_layer"}, "selects none of the prunable layers"),
        ({"pruning_policy": 3}, "`pruning_policy` must be None"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as error:
            prune_low_magnitude(classifier, schedule, **kwargs)
        assert message in str(error.value)
    with pytest.raises(ValueError, match="`pruning_schedule` must be a tfbert"):
        prune_low_magnitude(classifier, 0.5)
    pruned = prune_low_magnitude(classifier, schedule)
    with pytest.raises(ValueError, match="already pruning-wrapped; call strip_pruning"):
        prune_low_magnitude(pruned, schedule)
    with pytest.raises(ValueError, match="is not pruning-wrapped"):
        strip_pruning(classifier)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="inner")
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"Layers \['inner/dense.*'\] sit inside other layers"):
        prune_low_magnitude(outer, schedule)


def test_keras_sequential_models_and_single_layers_prune_too(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 16)).astype("float32"), rng.normal(size=(32, 1))
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)]
    )
    pruned = prune_low_magnitude(model, PolynomialDecay(0.0, 0.5, 0, 3, frequency=1))
    assert all(isinstance(layer, MaskedDense) for layer in pruned.layers)
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(x, y, batch_size=8, epochs=1, callbacks=[UpdatePruningStep()], verbose=0)
    assert zero_fraction(pruned.layers[0].kernel) == pytest.approx(0.5)
    pruned.save(tmp_path / "sequential.keras")
    loaded = keras.saving.load_model(tmp_path / "sequential.keras")
    assert_all_close(loaded(x), pruned(x), atol=1e-6)
    stripped = strip_pruning(loaded)
    assert type(stripped.layers[0]) is keras.layers.Dense
    assert_all_close(stripped(x), pruned(x), atol=1e-6)

    dense = keras.layers.Dense(4)
    dense.build((None, 8))
    masked = prune_low_magnitude(dense, ConstantSparsity(0.25, 0))
    assert isinstance(masked, MaskedDense)
    np.testing.assert_array_equal(np.asarray(masked.kernel), np.asarray(dense.kernel))
    assert type(strip_pruning(masked)) is keras.layers.Dense


def test_pruning_summaries_write_each_layers_sparsity(tmp_path, tokenizer, data):
    import tensorflow as tf

    x, y = data
    pruned = prune_low_magnitude(
        small_classifier(tokenizer.vocabulary_size), ConstantSparsity(0.5, 0)
    )
    pruned.compile(optimizer="adam")
    pruned.fit(
        x,
        y,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[UpdatePruningStep(), PruningSummaries(str(tmp_path))],
    )
    values = {}
    folder = tmp_path / "train"
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(str(folder / name)):
            for value in event.summary.value:
                values[value.tag] = float(tf.make_ndarray(value.tensor))
    assert values["pruning/sparsity"] == pytest.approx(0.5, abs=0.01)
    tag = "pruning/bert_backbone/transformer_layer_1/intermediate_dense/sparsity"
    assert values[tag] == pytest.approx(0.5)
    assert len([t for t in values if t.endswith("/sparsity")]) == 14 + 1


_MIRRORED = """
import json
import keras
import numpy as np
from tfbert.training import resolve_strategy
strategy = resolve_strategy("mirrored", cpu_replicas=2)
from tfbert.compression import (ConstantSparsity, UpdatePruningStep, prune_low_magnitude,
                                strip_pruning)
from tfbert.models import BertBackbone, BertClassifier

rng = np.random.default_rng(0)
x = {"token_ids": rng.integers(1, 500, (16, 12)).astype("int32"),
     "segment_ids": np.zeros((16, 12), "int32"), "padding_mask": np.ones((16, 12), "int32")}
y = rng.integers(0, 2, 16)

def train(scope):
    keras.utils.set_random_seed(1)
    with scope:
        backbone = BertBackbone(vocabulary_size=500, num_layers=1, num_heads=2, hidden_dim=16,
                                intermediate_dim=32, dropout=0.0)
        model = prune_low_magnitude(BertClassifier(backbone, 2, dropout=0.0),
                                    ConstantSparsity(0.5, 0, frequency=2))
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, callbacks=[UpdatePruningStep()],
              verbose=0)
    return [np.asarray(w).tolist() for w in strip_pruning(model).weights]

one, two = train(keras.name_scope("one")), train(strategy.scope())
print("RESULT", json.dumps({"replicas": strategy.num_replicas_in_sync,
    "max_diff": max(float(np.max(np.abs(np.subtract(a, b)))) for a, b in zip(one, two)),
    "zeros": [float(np.mean(np.asarray(w) == 0)) for w in two]}))
"""


@pytest.mark.large
def test_masks_hold_under_mirrored_strategy_as_on_one_device():
    import json

    done = subprocess.run(
        [sys.executable, "-c", _MIRRORED],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT ") :])
    assert result["replicas"] == 2
    assert result["max_diff"] < 1e-5
    assert max(result["zeros"]) == pytest.approx(0.5, abs=0.01)  # kernels half zero


_TFMOT = """
import os
import numpy as np
import tfbert
import tensorflow_model_optimization as tfmot
import tensorflow as tf
from tfbert.compression import UpdatePruningStep, prune_low_magnitude
from tfbert.compression.magnitude_pruning import masked_layers, sparsity_of
from tfbert.models import BertBackbone, BertClassifier

print("TF_KERAS", tf.keras.__version__, os.environ.get("TF_USE_LEGACY_KERAS"))
backbone = BertBackbone(vocabulary_size=200, num_layers=1, num_heads=2, hidden_dim=16,
                        intermediate_dim=32)
schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=2, frequency=1)
model = prune_low_magnitude(BertClassifier(backbone, 2), schedule)
model.compile(optimizer="adam")
x = {"token_ids": np.ones((4, 8), "int32"), "segment_ids": np.zeros((4, 8), "int32"),
     "padding_mask": np.ones((4, 8), "int32")}
history = model.fit(x, np.array([0, 1, 0, 1]), batch_size=2, epochs=2,
                    callbacks=[UpdatePruningStep()], verbose=0)
print("TRAINED", np.isfinite(history.history["loss"]).all(),
      max(sparsity_of(layer) for layer in masked_layers(model).values()))
"""


def test_importing_tfmot_after_tfbert_keeps_keras_3_and_its_schedules_work():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [sys.executable, "-c", _TFMOT],
        capture_output=True,
        text=True,
        env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    lines = {
        line.split()[0]: line.split()[1:]
        for line in done.stdout.splitlines()
        if line.startswith(("TF_KERAS", "TRAINED"))
    }
    assert "TRAINED" in lines, done.stderr[-3000:]
    assert lines["TF_KERAS"][0].startswith("3.")  # tf.keras is still Keras 3
    assert lines["TF_KERAS"][1] == "1"  # although tfmot asked for Keras 2
    assert lines["TRAINED"] == ["True", "0.5"]


def test_a_stripped_pruned_model_exports_and_its_artifacts_match_keras(tmp_path, tokenizer, data):
    from tfbert.export import onnx, run_onnx, saved_model, verify_saved_model

    x, y = data
    pruned = prune_low_magnitude(
        small_classifier(tokenizer.vocabulary_size), ConstantSparsity(0.5, 0)
    )
    pruned.compile(optimizer="adam")
    pruned.fit(x, y, batch_size=4, epochs=1, callbacks=[UpdatePruningStep()], verbose=0)
    stripped = strip_pruning(pruned)
    texts = ["a gem of a film", "two hours i want back", "it is neither good nor bad , sadly"]
    path = saved_model(stripped, str(tmp_path / "served"), tokenizer=tokenizer)
    assert verify_saved_model(path, stripped, texts, tokenizer=tokenizer)["max_abs_diff"] < 1e-5
    got = run_onnx(onnx(stripped, str(tmp_path / "model.onnx")), x)
    np.testing.assert_allclose(got["logits"], np.asarray(pruned(x)), atol=1e-4)


def test_two_of_four_masks_equal_tfmot_s(monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", os.environ.get("TF_USE_LEGACY_KERAS", "0"))
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

    kernel = np.random.default_rng(3).normal(size=(16, 6)).astype("float32")  # (inputs, outputs)
    ours = magnitude_mask(kernel, 0.0, sparsity_m_by_n=(2, 4))
    # tfmot groups along the last axis of a rank-2 tensor; its Dense kernels
    # are rearranged to (outputs, inputs) first, so groups run along inputs.
    theirs = np.asarray(pruning_utils.generate_m_by_n_mask(kernel.T, (2, 4))).T
    np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(ours, magnitude_mask(kernel, 0.5))  # not the unstructured mask
    # Blocks and groups that do not divide the kernel are padded, as tfmot pads.
    odd = np.random.default_rng(4).normal(size=(6, 5))
    assert magnitude_mask(odd, 0.0, sparsity_m_by_n=(2, 4)).shape == (6, 5)
    assert magnitude_mask(odd, 0.5, block_size=(1, 4)).shape == (6, 5)
    assert magnitude_mask(np.ones((1, 2)), 0.99).sum() == 1  # at least one weight stays
