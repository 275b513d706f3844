"""Runs `tfbert.training.pretrain` in its own process for the distributed and
resume tests: `python pretrain_worker.py CONFIG.json RESULT.npz [FAULT]`.

TF_CONFIG (multi-worker) comes from the environment. The result holds every
weight of the trained pretrainer (`weight_<i>`), the epoch logs, the epochs
this process ran and its strategy. FAULT kills the process with SIGKILL:
`kill-at-step=G` just before optimizer step G (G steps done before it),
`kill-in-backup=K` halfway through writing the K-th backup's weights file.
"""

import json
import os
import signal
import sys

import keras
import numpy as np

import tfbert  # noqa: F401  (pins the TensorFlow backend first)
from tfbert.training import PretrainingConfig, pretrain
from tfbert.training.strategy import strategy_name


class _KillAtStep(keras.callbacks.Callback):
    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _kill_in_backup(count: int) -> None:
    """The `count`-th weights backup dies with half of its file written."""
    save_weights = keras.Model.save_weights
    calls = {"n": 0}

    def dying_save_weights(self, filepath, *args, **kwargs):
        save_weights(self, filepath, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == count:
            size = os.path.getsize(filepath)
            with open(filepath, "r+b") as f:
                f.truncate(size // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    keras.Model.save_weights = dying_save_weights


def main(config_path: str, result_path: str, fault: str = "") -> None:
    callbacks = []
    if fault.startswith("kill-at-step="):
        callbacks.append(_KillAtStep(int(fault.split("=")[1])))
    elif fault.startswith("kill-in-backup="):
        _kill_in_backup(int(fault.split("=")[1]))
    pretrainer, history = pretrain(PretrainingConfig.from_json(config_path), callbacks)
    strategy = pretrainer.distribute_strategy
    info = {
        "history": history.history,
        "epochs_run": history.epoch,
        "replicas": strategy.num_replicas_in_sync,
        "strategy": strategy_name(strategy),
    }
    weights = {f"weight_{i}": np.asarray(w.numpy()) for i, w in enumerate(pretrainer.weights)}
    np.savez(result_path, info=json.dumps(info), **weights)


if __name__ == "__main__":
    main(*sys.argv[1:])
