"""Runs `tfbert.training.pretrain` in its own process for the distributed and
resume tests: `python pretrain_worker.py CONFIG.json RESULT.npz`.

TF_CONFIG (multi-worker) comes from the environment. The result holds every
weight of the trained pretrainer (`weight_<i>`) and the epoch logs.
"""

import json
import sys

import numpy as np

import tfbert  # noqa: F401  (pins the TensorFlow backend first)
from tfbert.training import PretrainingConfig, pretrain


def main(config_path: str, result_path: str) -> None:
    pretrainer, history = pretrain(PretrainingConfig.from_json(config_path))
    weights = {f"weight_{i}": np.asarray(w.numpy()) for i, w in enumerate(pretrainer.weights)}
    np.savez(result_path, history=json.dumps(history.history), **weights)


if __name__ == "__main__":
    main(*sys.argv[1:])
