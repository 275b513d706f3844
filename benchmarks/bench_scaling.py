"""What distribution costs: BertPretrainer `fit` on 1 vs 2 replicas, side by side.

Every setup runs `tfbert.training.pretrain` in fresh processes (a CPU can
only be split into logical devices before TensorFlow starts; workers are
processes) on the same real IMDB text: bert_mini, sequence 128, AdamW,
float32. Setups: one device; MirroredStrategy over the CPU split in two
(same global batch, and twice the global batch); two local workers under
MultiWorkerMirroredStrategy talking over gRPC on 127.0.0.1. Throughput is
taken from the last epoch (the first includes tracing). These 2-core
machines share their cores among all replicas, so 2 replicas cannot be
faster here: the table shows the overhead of the distributed step (all
reduces, per-replica dispatch, gRPC), which is what a real multi-GPU or
multi-host run pays on top of its extra compute.

    python benchmarks/bench_scaling.py [--steps 20] [--batch 16]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETUPS = (
    # name, strategy settings, processes, global batch multiplier
    ("1 device", {"strategy": "cpu"}, 1, 1),
    (
        "Mirrored, 2 CPU devices, same global batch",
        {"strategy": "mirrored", "cpu_replicas": 2},
        1,
        1,
    ),
    (
        "Mirrored, 2 CPU devices, 2x global batch",
        {"strategy": "mirrored", "cpu_replicas": 2},
        1,
        2,
    ),
    ("2 workers (MultiWorkerMirrored), 2x global batch", {"strategy": "multi_worker"}, 2, 2),
)


def _worker(config_path: str, result_path: str) -> None:
    import tfbert  # noqa: F401
    from tfbert.training import PretrainingConfig, pretrain

    _, history = pretrain(PretrainingConfig.from_json(config_path))
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(history.history, f)


def _run_setup(folder, name, settings, processes, batch, steps, corpus, vocabulary):
    config = {
        "data": [corpus],
        "vocabulary": vocabulary,
        "output_dir": os.path.join(folder, name.replace(" ", "_").replace(",", "")),
        "preset": "bert_mini",
        "sequence_length": 128,
        "batch_size": batch,
        "epochs": 2,
        "steps_per_epoch": steps,
        "precision": "float32",
        "verbose": 0,
        "backup": False,
        "tensorboard": False,
        **settings,
    }
    config_path = config["output_dir"] + ".json"
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    from tfbert.training import free_ports

    ports = free_ports(processes)
    workers = []
    for index in range(processes):
        env = dict(os.environ)
        env.pop("TF_CONFIG", None)
        if processes > 1:
            env["TF_CONFIG"] = json.dumps(
                {
                    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                    "task": {"type": "worker", "index": index},
                }
            )
        result = f"{config['output_dir']}-{index}.json"
        command = [sys.executable, __file__, "--worker", config_path, result]
        workers.append((subprocess.Popen(command, env=env), result))
    for process, _ in workers:
        if process.wait(timeout=1800) != 0:
            raise RuntimeError(f"{name}: a training process failed")
    with open(workers[0][1], encoding="utf-8") as f:
        history = json.load(f)
    return history["examples_per_second"][-1], history["mlm_loss"][-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch (2 epochs)")
    parser.add_argument("--batch", type=int, default=16, help="global batch of 1 device")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return

    import tfbert  # noqa: F401
    from tfbert.text import minilm_vocabulary_file, movie_reviews, write_pretraining_text

    folder = tempfile.mkdtemp(prefix="bench-scaling-")
    corpus = os.path.join(folder, "corpus.txt")
    write_pretraining_text([text for text, _ in movie_reviews("imdb")[:1500]], corpus)
    rows = []
    for name, settings, processes, multiplier in SETUPS:
        batch = args.batch * multiplier
        print(f"running: {name} ...", flush=True)
        examples, loss = _run_setup(
            folder, name, settings, processes, batch, args.steps, corpus, minilm_vocabulary_file()
        )
        rows.append((name, batch, examples / batch, examples, loss))

    base = rows[0][3]
    print(f"\nbert_mini pretraining, sequence 128, float32, {os.cpu_count()} CPU cores")
    header = (
        f"{'setup':<50} {'global batch':>12} {'steps/s':>8} {'examples/s':>11} {'vs 1 device':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, batch, steps, examples, _ in rows:
        print(f"{name:<50} {batch:>12} {steps:>8.2f} {examples:>11.1f} {examples / base:>11.2f}x")


if __name__ == "__main__":
    main()
