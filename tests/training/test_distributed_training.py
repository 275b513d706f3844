"""Distributed and fault-tolerant `fit`, each run in fresh processes.

Every run pretrains bert_tiny on 40 real IMDB reviews through
`tfbert.training.pretrain` (tests/training/pretrain_worker.py) with BERT's
AdamW, warmup + linear decay and global-norm clipping, and the final weights
are compared.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfbert.text import write_pretraining_text
from tfbert.training import free_ports

# One worker builds this module's module-scoped fixtures (see tests/conftest.py).
pytestmark = pytest.mark.xdist_group("test_distributed_training")

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


def _start(config, result, tf_config=None, fault=""):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, WORKER, config, str(result), fault],
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


def _killed(config, result, fault, tf_config=None):
    process = _start(config, result, tf_config, fault)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, output[-3000:]


def _weights(result):
    with np.load(result) as data:
        return [data[f"weight_{i}"] for i in range(len(data.files) - 1)]


def _info(result):
    with np.load(result) as data:
        return json.loads(str(data["info"]))


def _history(result):
    return _info(result)["history"]


def _max_difference(a, b):
    assert len(a) == len(b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


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
    _run(config, tmp_path / "result.npz")
    info = _info(tmp_path / "result.npz")
    assert (info["strategy"], info["replicas"]) == ("MirroredStrategy", 2)
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
    ports = free_ports(2)
    workers = [_start(config, tmp_path / f"worker{i}.npz", _cluster(ports, i)) for i in range(2)]
    for worker in workers:
        _finish(worker)
    for i in range(2):
        info = _info(tmp_path / f"worker{i}.npz")
        assert (info["strategy"], info["replicas"]) == ("MultiWorkerMirroredStrategy", 2)
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


# Resumption: AdamW with a schedule, and dropout, so that optimizer slots,
# random state and data order must all come back for the weights to match.
# Backups every 2 steps; epochs of 6 steps.
RESUMABLE = dict(epochs=3, steps_per_epoch=6, dropout=0.1, backup=True, backup_steps=2)


@pytest.fixture(scope="module")
def short_corpus(tmp_path_factory, imdb_reviews):
    """7 batches of 8 examples."""
    path = tmp_path_factory.mktemp("short") / "train.txt"
    write_pretraining_text([text for text, _ in imdb_reviews[:10]], str(path))
    return str(path)


@pytest.fixture(scope="module", params=["one pass per epoch", "repeated"])
def uninterrupted(request, tmp_path_factory, corpus, short_corpus, vocabulary_file):
    """(settings, weights, info) of a run never killed. "one pass per epoch":
    each epoch is a fresh pass over 6 of the data's 30 batches; "repeated":
    the data (7 batches) repeats, and epochs are 10 steps of one stream."""
    settings = dict(RESUMABLE, data=[corpus])
    if request.param == "repeated":
        settings.update(data=[short_corpus], steps_per_epoch=10, epochs=2)
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    _run(_config(tmp_path, "run", corpus, vocabulary_file, **settings), tmp_path / "run.npz")
    return settings, _weights(tmp_path / "run.npz"), _info(tmp_path / "run.npz")


def _assert_resumed_like(result, uninterrupted, resumed_epoch):
    settings, weights, info = uninterrupted
    assert _max_difference(_weights(result), weights) < TOLERANCE
    # The resumed epoch's logs cover all its steps (the metrics' running
    # totals were backed up too), not only those after the restart.
    resumed = _info(result)
    assert resumed["epochs_run"] == list(range(resumed_epoch, settings["epochs"]))
    for name in ("loss", "mlm_loss", "nsp_accuracy"):
        np.testing.assert_allclose(
            resumed["history"][name], info["history"][name][resumed_epoch:], rtol=1e-5
        )


def test_a_run_killed_at_a_random_step_resumes_to_the_uninterrupted_weights(
    tmp_path, corpus, vocabulary_file, uninterrupted
):
    settings = uninterrupted[0]
    steps = settings["steps_per_epoch"]
    # Any step inside an epoch after its first backup, and not just after one
    # (backups every 2 steps, counted from the epoch's start).
    every = settings["backup_steps"]
    choices = [g for g in range(steps * settings["epochs"]) if g % steps > every and g % every]
    kill_at = random.Random().choice(choices)
    config = _config(tmp_path, "killed", corpus, vocabulary_file, **settings)
    _killed(config, tmp_path / "killed.npz", f"kill-at-step={kill_at}")
    backup = json.loads((tmp_path / "killed" / "backup" / "training_metadata.json").read_text())
    done = backup["epoch"] * steps + backup["step"]
    assert 0 < kill_at - done <= settings["backup_steps"], (kill_at, backup)
    assert backup["step"] > 0, backup  # a backup from inside the epoch
    assert not (tmp_path / "killed" / "pretrainer.keras").exists()

    _run(config, tmp_path / "killed.npz")
    _assert_resumed_like(tmp_path / "killed.npz", uninterrupted, backup["epoch"])
    assert not (tmp_path / "killed" / "backup").exists()  # removed once finished

    # A finished run is never overwritten.
    again = _start(config, tmp_path / "again.npz")
    output, _ = again.communicate(timeout=120)
    assert again.returncode != 0
    assert "already exists: that run finished" in output


@pytest.mark.parametrize("uninterrupted", ["one pass per epoch"], indirect=True)
def test_a_kill_while_a_backup_is_written_leaves_the_previous_backup_in_charge(
    tmp_path, corpus, vocabulary_file, uninterrupted
):
    settings = uninterrupted[0]
    config = _config(tmp_path, "killed", corpus, vocabulary_file, **settings)
    # Backups after steps 2 and 4; the third (step 6, the end of the first
    # epoch) dies with half of its weights file on disk.
    _killed(config, tmp_path / "killed.npz", "kill-in-backup=3")
    backup_dir = tmp_path / "killed" / "backup"
    backup = json.loads((backup_dir / "training_metadata.json").read_text())
    assert (backup["epoch"], backup["step"]) == (0, 4)
    leftovers = [name for name in os.listdir(backup_dir) if ".staging-" in name]
    assert len(leftovers) == 1 and leftovers[0].endswith(".weights.h5"), leftovers

    # Resuming with settings that train otherwise is refused, naming them.
    output_dir = str(tmp_path / "killed")
    other = _config(
        tmp_path, "other", corpus, vocabulary_file, **settings, learning_rate=5e-4,
        output_dir=output_dir,
    )  # fmt: skip
    refused = _start(other, tmp_path / "other.npz")
    output, _ = refused.communicate(timeout=120)
    assert refused.returncode != 0
    assert "holds the backup of an unfinished run with other settings" in output
    assert "learning_rate: 0.001 -> 0.0005" in output

    _run(config, tmp_path / "killed.npz")
    _assert_resumed_like(tmp_path / "killed.npz", uninterrupted, 0)


@pytest.mark.large
def test_two_killed_workers_resume_from_the_chiefs_backup(
    tmp_path, corpus, vocabulary_file, single_device
):
    # single_device's run (no dropout: replicas draw other dropout masks than
    # one device), on two workers, backed up every 2 steps of 4 per epoch.
    settings = dict(strategy="multi_worker", backup=True, backup_steps=2)
    config = _config(tmp_path, "run", corpus, vocabulary_file, **settings)
    kill_at = 7  # inside the second epoch, a step after the backup of step 6
    ports = free_ports(2)
    workers = [
        _start(config, tmp_path / f"worker{i}.npz", _cluster(ports, i), f"kill-at-step={kill_at}")
        for i in range(2)
    ]
    killed = 0
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        # A worker still waiting on step 7's all-reduce when its peer dies at
        # step 8's start fails with the collective aborted instead: a crash too.
        aborted = worker.returncode == 1 and "Collective ops is aborted" in output
        assert worker.returncode == -signal.SIGKILL or aborted, output[-3000:]
        killed += worker.returncode == -signal.SIGKILL
    assert killed >= 1
    # Only the chief wrote the backup, which both workers restore.
    backup = json.loads((tmp_path / "run" / "backup" / "training_metadata.json").read_text())
    assert (backup["epoch"], backup["step"]) == (1, 2)

    ports = free_ports(2)
    workers = [_start(config, tmp_path / f"worker{i}.npz", _cluster(ports, i)) for i in range(2)]
    for worker in workers:
        _finish(worker)
    weights, history = single_device
    for i in range(2):
        assert _max_difference(_weights(tmp_path / f"worker{i}.npz"), weights) < TOLERANCE
        info = _info(tmp_path / f"worker{i}.npz")
        assert info["epochs_run"] == [1]
        for name in ("loss", "mlm_loss", "nsp_accuracy"):
            np.testing.assert_allclose(info["history"][name], history[name][1:], rtol=1e-5)


def test_a_missing_worker_gives_an_error_not_a_hang(tmp_path, corpus, vocabulary_file):
    config = _config(
        tmp_path, "run", corpus, vocabulary_file, strategy="multi_worker", cluster_timeout=5
    )
    started = time.monotonic()
    process = _start(config, tmp_path / "result.npz", _cluster(free_ports(2), 0))
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
