import json
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tfbert.text import pretraining_dataset, write_pretraining_text
from tfbert.training import (
    check_dataset,
    compile_options,
    global_batch_size,
    is_chief,
    per_replica_batch_size,
    read_tf_config,
    resolve_strategy,
)

CLUSTER = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ("{'cluster': ", "TF_CONFIG is not valid JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "needs a 'cluster' object"),
        (json.dumps({"cluster": CLUSTER}), "needs a 'task' with 'type' and 'index'"),
        (
            json.dumps({"cluster": CLUSTER, "task": {"type": "chief", "index": 0}}),
            "task type 'chief' is not a job of its cluster",
        ),
        (
            json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}),
            r"task index 2 is outside job 'worker', which has 2 member\(s\)",
        ),
        (
            json.dumps(
                {"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}
            ),
            "address 'nohostport' is not host:port",
        ),
    ],
)
def test_a_broken_tf_config_is_explained(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message):
        read_tf_config()
    with pytest.raises(ValueError, match=message):
        resolve_strategy("auto")


def test_tf_config_is_read_and_absent_is_none(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert read_tf_config() is None
    config = {"cluster": CLUSTER, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert read_tf_config() == config


def test_kinds_that_cannot_be_had_here_fail_at_once(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(RuntimeError, match="Asked for a TPU, but none is named"):
        resolve_strategy("tpu")
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        resolve_strategy("multi_worker")
    with pytest.raises(ValueError, match="Unknown strategy kind 'gpus'"):
        resolve_strategy("gpus")
    # TensorFlow already runs in this process: the CPU can no longer be split.
    tf.constant(1)
    with pytest.raises(RuntimeError, match="Cannot split the CPU into 3 devices"):
        resolve_strategy("mirrored", cpu_replicas=3)


def test_auto_on_this_machine_is_one_cpu_device(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    strategy = resolve_strategy("auto")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1
    assert is_chief(strategy)
    assert compile_options(strategy) == {"steps_per_execution": 1, "jit_compile": False}
    assert global_batch_size(16, strategy) == 16
    assert per_replica_batch_size(16, strategy) == 16
    with pytest.raises(ValueError, match="must be positive"):
        global_batch_size(0, strategy)


def test_pretraining_batches_can_feed_a_tpu(tmp_path, tokenizer, imdb_reviews):
    path = str(tmp_path / "corpus.txt")
    write_pretraining_text([text for text, _ in imdb_reviews[:20]], path)
    dataset = pretraining_dataset(path, tokenizer, 64, 4, seed=0)
    assert check_dataset(dataset, "tpu") is dataset
    x, y, weights = dataset.element_spec
    for spec in (*x.values(), *y.values()):
        assert spec.dtype == tf.int32 and spec.shape.is_fully_defined()


def test_what_cannot_feed_a_tpu_is_named():
    texts = tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(2)
    ragged = tf.data.Dataset.from_tensor_slices(np.zeros((5, 3), "int64")).batch(2)
    with pytest.raises(ValueError, match=r"batch is a string tensor: tokenize in tf.data"):
        check_dataset(texts, "tpu")
    with pytest.raises(ValueError, match="dtype int64: cast to int32") as error:
        check_dataset(ragged, "tpu")
    assert "shape (None, 3): batch with drop_remainder=True" in str(error.value)
    # Other strategies take any dataset.
    assert check_dataset(texts, tf.distribute.get_strategy()) is texts


def test_a_named_tpu_that_does_not_answer_fails_in_bounded_time():
    # In its own process: connecting rewires TensorFlow's eager context.
    script = (
        "import tfbert\n"
        "from tfbert.training import resolve_strategy\n"
        "resolve_strategy('tpu', tpu='grpc://127.0.0.1:1', cluster_timeout=3)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "Asked for TPU 'grpc://127.0.0.1:1' but could not connect: no answer within 3 s" in (
        done.stderr
    )
    assert time.monotonic() - started < 60
