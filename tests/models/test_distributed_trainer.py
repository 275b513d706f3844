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
