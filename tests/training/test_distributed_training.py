"""Distributed and fault-tolerant `fit`, each run in fresh processes.

Every run pretrains bert_tiny on 40 real IMDB reviews through
`tfbert.training.pretrain` (tests/training/pretrain_worker.py) with BERT's
AdamW, warmup + linear decay and global-norm clipping, and the final weights
are compared.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tfbert.text import write_pretraining_text

WORKER = os.path.join(os.path.dirname(__file__), "pretrain_worker.py")
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, imdb_reviews):
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    write_pretraining_text([text for text, _ in imdb_reviews[:40]], str(path))
    return str(path)


def _config(tmp_path, name, corpus, vocabulary_file, **settings):
    config = {
        "data": [corpus],
        "vocabulary": vocabulary_file,
        "output_dir": str(tmp_path / name),
        "sequence_length": 64,
        "batch_size": 8,
        "epochs": 2,
        "steps_per_epoch": 4,
        "dropout": 0.0,
        "precision": "float32",
        "learning_rate": 1e-3,
        "strategy": "cpu",
        "verbose": 2,
        "tensorboard": False,
        **settings,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return str(path)


def _start(config, result, tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, WORKER, config, str(result)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def _run(config, result, tf_config=None):
    return _finish(_start(config, result, tf_config))


def _weights(result):
    with np.load(result) as data:
        return [data[f"weight_{i}"] for i in range(len(data.files) - 1)]


def _history(result):
    with np.load(result) as data:
        return json.loads(str(data["history"]))


def _max_difference(a, b):
    assert len(a) == len(b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _cluster(ports, index):
    return {
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    }


@pytest.fixture(scope="module")
def single_device(tmp_path_factory, corpus, vocabulary_file):
    """The reference: one device, global batch 8, 2 epochs of 4 steps."""
    tmp_path = tmp_path_factory.mktemp("single")
    result = tmp_path / "result.npz"
    _run(_config(tmp_path, "run", corpus, vocabulary_file), result)
    return _weights(result), _history(result)


def test_mirrored_over_two_cpu_devices_trains_like_one_device(
    tmp_path, corpus, vocabulary_file, single_device
):
    config = _config(tmp_path, "run", corpus, vocabulary_file, strategy="mirrored", cpu_replicas=2)
    output = _run(config, tmp_path / "result.npz")
    assert "2 replica(s) (MirroredStrategy)" in output
    weights, reference = _weights(tmp_path / "result.npz"), single_device[0]
    # Each replica gets 4 of the 8 examples. Global-norm clipping (1.0) is
    # active: Keras alone clips each replica's share and ends 4e-3 away.
    assert _max_difference(weights, reference) < TOLERANCE
    history = _history(tmp_path / "result.npz")
    for name in ("loss", "mlm_loss", "nsp_accuracy"):
        np.testing.assert_allclose(history[name], single_device[1][name], rtol=1e-5)


@pytest.mark.large
def test_two_workers_fit_bert_pretrainer_like_one_process(
    tmp_path, corpus, vocabulary_file, single_device
):
    config = _config(tmp_path, "run", corpus, vocabulary_file, strategy="multi_worker")
    ports = _free_ports(2)
    workers = [_start(config, tmp_path / f"worker{i}.npz", _cluster(ports, i)) for i in range(2)]
    outputs = [_finish(worker) for worker in workers]
    for output in outputs:
        assert "2 replica(s) (MultiWorkerMirroredStrategy)" in output, output[-2000:]
    first, second = (_weights(tmp_path / f"worker{i}.npz") for i in range(2))
    assert _max_difference(first, second) == 0.0
    assert _max_difference(first, single_device[0]) < TOLERANCE
    # Epoch logs are global averages: every worker reports the single run's.
    for i in range(2):
        history = _history(tmp_path / f"worker{i}.npz")
        for name in ("loss", "mlm_loss", "mlm_accuracy", "nsp_loss"):
            np.testing.assert_allclose(history[name], single_device[1][name], rtol=1e-5)
    # Only the chief (worker 0) writes the model and backups.
    assert sorted(os.listdir(tmp_path / "run")) == [
        "checkpoint.keras",
        "config.json",
        "pretrainer.keras",
    ]


def test_gradient_accumulation_on_two_replicas_trains_like_on_one_device(
    tmp_path, corpus, vocabulary_file
):
    settings = dict(gradient_accumulation_steps=2, weight_decay=0.1)
    one = _config(tmp_path, "one", corpus, vocabulary_file, **settings)
    two = _config(
        tmp_path, "two", corpus, vocabulary_file, strategy="mirrored", cpu_replicas=2, **settings
    )
    _run(one, tmp_path / "one.npz")
    _run(two, tmp_path / "two.npz")
    assert _max_difference(_weights(tmp_path / "one.npz"), _weights(tmp_path / "two.npz")) < (
        TOLERANCE
    )


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(
    tmp_path, corpus, vocabulary_file
):
    # AdamW with a schedule, and dropout: optimizer slots, random state and
    # data order must all come back for the weights to match.
    settings = dict(epochs=3, steps_per_epoch=6, dropout=0.1, backup=True)
    _run(_config(tmp_path, "whole", corpus, vocabulary_file, **settings), tmp_path / "whole.npz")

    config = _config(tmp_path, "killed", corpus, vocabulary_file, **settings)
    metadata = tmp_path / "killed" / "backup" / "training_metadata.json"
    process = _start(config, tmp_path / "killed.npz")
    deadline = time.monotonic() + 240
    while not (metadata.exists() and json.loads(metadata.read_text())["epoch"] >= 1):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no backup after the first epoch"
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert json.loads(metadata.read_text())["epoch"] == 1
    assert not (tmp_path / "killed" / "pretrainer.keras").exists()

    output = _run(config, tmp_path / "killed.npz")
    assert "resuming after epoch 1" in output
    resumed, whole = _weights(tmp_path / "killed.npz"), _weights(tmp_path / "whole.npz")
    assert _max_difference(resumed, whole) < TOLERANCE
    assert not (tmp_path / "killed" / "backup").exists()  # removed once finished

    # A finished run is never overwritten.
    again = _start(config, tmp_path / "again.npz")
    output, _ = again.communicate(timeout=120)
    assert again.returncode != 0
    assert "already exists: that run finished" in output


def test_a_missing_worker_gives_an_error_not_a_hang(tmp_path, corpus, vocabulary_file):
    config = _config(
        tmp_path, "run", corpus, vocabulary_file, strategy="multi_worker", cluster_timeout=5
    )
    started = time.monotonic()
    process = _start(config, tmp_path / "result.npz", _cluster(_free_ports(2), 0))
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "not every worker of TF_CONFIG joined within 5 s" in output
    assert time.monotonic() - started < 90


def test_a_global_batch_that_does_not_split_over_replicas_is_refused(
    tmp_path, corpus, vocabulary_file
):
    config = _config(
        tmp_path,
        "run",
        corpus,
        vocabulary_file,
        strategy="mirrored",
        cpu_replicas=2,
        batch_size=7,
    )
    process = _start(config, tmp_path / "result.npz")
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "Global batch size 7 does not split evenly over 2 replicas" in output
    assert "e.g. 6 or 8" in output
