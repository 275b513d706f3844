"""The multi-replica fixes' version guard and optimizer check.

The fixes themselves are compared with one device in
tests/training/test_distributed_training.py (MirroredStrategy, two workers).
"""

import os
import subprocess
import sys

import pytest

from tfbert.models.distributed_trainer import check_keras_version

# Two replicas (the CPU split in two): a Keras optimizer that clips per
# replica is pointed out; then, with Keras reporting an untested version,
# tfbert's optimizer refuses to train.
_TWO_REPLICAS = """
import warnings
import keras
import numpy as np
from tfbert.models import DistributedTrainer
from tfbert.training import create_adamw, resolve_strategy

strategy = resolve_strategy("mirrored", cpu_replicas=2)

def model(optimizer):
    with strategy.scope():
        inputs = keras.Input((4,))
        model = DistributedTrainer(inputs, keras.layers.Dense(1)(inputs))
        model.compile(optimizer=optimizer(), loss="mse")
    return model

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model(lambda: keras.optimizers.AdamW(global_clipnorm=1.0)).make_train_function()
    model(lambda: create_adamw(1e-3)).make_train_function()
print("WARNINGS", [str(w.message) for w in caught if "replicas" in str(w.message)])
keras.__version__ = "3.16.0"  # what a newer Keras would report
model(lambda: create_adamw(1e-3)).fit(np.ones((8, 4)), np.ones((8, 1)), batch_size=8, verbose=0)
"""


def test_untested_keras_versions_are_refused_with_the_fix():
    check_keras_version("test", "3.15.2")  # the tested series passes
    for version in ("3.16.0", "3.14.1", "4.0.0"):
        with pytest.raises(RuntimeError) as error:
            check_keras_version("Clipping across replicas", version)
        message = str(error.value)
        assert f"this process runs Keras {version}" in message
        assert "pip install 'keras>=3.15,<3.16'" in message
        assert "train on one device" in message


def test_two_replicas_warn_about_keras_clipping_and_refuse_an_untested_keras():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", _TWO_REPLICAS], capture_output=True, text=True, env=env
    )
    (warnings,) = [line for line in done.stdout.splitlines() if line.startswith("WARNINGS")]
    assert warnings.count("clips or accumulates each of the 2 replicas") == 1, warnings
    assert "tfbert.training.create_adamw" in warnings
    assert done.returncode != 0
    assert "Clipping across replicas (DistributedOptimizer) relies on Keras internals" in (
        done.stderr
    )
    assert "this process runs Keras 3.16.0" in done.stderr


def test_a_fresh_model_traces_its_first_step_once_and_trains_like_keras(real_inputs):
    """Keras builds the optimizer inside the first trace on one device, which
    makes TensorFlow trace the step twice; tfbert builds it first. The
    weights after `fit` equal those of the same model trained by Keras'
    own (twice-traced) path."""
    import keras
    import numpy as np

    from tests.models.test_bert_backbone import TINY
    from tfbert.models import BertBackbone, BertClassifier

    labels = np.arange(len(real_inputs["token_ids"])) % 2
    keras.utils.set_random_seed(0)
    model = BertClassifier(BertBackbone(**TINY, dropout=0.0), 2, dropout=0.0)
    weights = model.get_weights()
    traced = []
    train_step, test_step = model.train_step, model.test_step
    model.train_step = lambda data: traced.append("train") or train_step(data)
    model.test_step = lambda data: traced.append("test") or test_step(data)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = model.evaluate(real_inputs, labels, batch_size=4, verbose=0, return_dict=True)
    assert not model.optimizer.built  # evaluating builds no optimizer slots
    model.fit(real_inputs, labels, batch_size=4, epochs=2, verbose=0)
    evaluation = model.evaluate(real_inputs, labels, batch_size=4, verbose=0, return_dict=True)
    assert traced.count("train") == 1, traced
    assert evaluation["loss"] < before["loss"]
    trained = model.get_weights()

    # The same layers in a plain keras.Model, which tfbert changes nothing of.
    plain = keras.Model(model.inputs, model.outputs)
    plain.set_weights(weights)
    plain.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    plain.fit(real_inputs, labels, batch_size=4, epochs=2, verbose=0)
    for ours, theirs in zip(trained, plain.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    loss = plain.evaluate(real_inputs, labels, batch_size=4, verbose=0)
    np.testing.assert_allclose(evaluation["loss"], loss, rtol=1e-5)
