"""Training throughput of tfbert's BertPretrainer vs keras-hub's BertMaskedLM.

Same size (bert_mini: L4/H256/A4/I1024, vocab 30522), batch 32, sequence 128,
20 masked positions, AdamW, on the same real IMDB batches, in one process.
Models are timed in interleaved rounds (each round runs every model for the
same steps), so drift in machine load hits all of them alike. Prints a table
of sequences/s (median and best round), tokens/s, model FLOP/s as a share of
the measured matmul peak, the ratio to keras-hub at the same precision, and the
loss along the rounds (the loss curves must match for the speed to count).
These VMs are noisy: round times of one model vary by 10-20%, so compare
models within one run, never across runs.

    python benchmarks/bench_train.py [--rounds 10] [--steps 4] [--precision both]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend)
from tfbert.models import BertBackbone, BertPretrainer  # noqa: E402
from tfbert.text import (  # noqa: E402
    BertTokenizer,
    minilm_vocabulary_file,
    movie_reviews,
    pretraining_dataset,
    write_pretraining_text,
)
from tfbert.training import cpu_flags  # noqa: E402

SIZE = {"num_layers": 4, "num_heads": 4, "hidden_dim": 256, "intermediate_dim": 1024}
VOCABULARY, BATCH, LENGTH, PREDICTIONS = 30522, 32, 128, 20


def real_batches(count: int, seed: int = 0):
    """`count` pretraining batches of IMDB text, materialised in memory."""
    tokenizer = BertTokenizer(minilm_vocabulary_file(), sequence_length=LENGTH)
    path = os.path.join(tempfile.mkdtemp(), "imdb.txt")
    write_pretraining_text([text for text, _ in movie_reviews("imdb")[:1500]], path)
    dataset = pretraining_dataset(
        path, tokenizer, LENGTH, BATCH, max_predictions=PREDICTIONS, seed=seed
    )
    return list(dataset.take(count))


def matmul_peak(dtype: str) -> float:
    """Measured FLOP/s of a large square matmul, the machine's practical peak."""
    n = 2048
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    run = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), "float32")))
    run()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def encoder_flops(hidden_dim: int, intermediate_dim: int, num_layers: int, length: int):
    """Forward FLOPs of one sequence's encoder matrix products: the Q/K/V/output
    and FFN projections of every position, the attention scores and mixing."""
    d, i, t = hidden_dim, intermediate_dim, length
    return num_layers * (2 * t * (4 * d * d + 2 * d * i) + 2 * 2 * t * t * d)


def flops_per_step(next_sentence: bool) -> float:
    """Model FLOPs of one training step (3x forward: forward + 2x backward)."""
    d = SIZE["hidden_dim"]
    encoder = encoder_flops(d, SIZE["intermediate_dim"], SIZE["num_layers"], LENGTH)
    mlm_head = PREDICTIONS * (2 * d * d + 2 * d * VOCABULARY)
    pooler_nsp = (2 * d * d + 2 * d * 2) if next_sentence else 0
    return 3 * BATCH * (encoder + mlm_head + pooler_nsp)


def build_tfbert(next_sentence: bool):
    backbone = BertBackbone(vocabulary_size=VOCABULARY, **SIZE)
    model = BertPretrainer(backbone, next_sentence_prediction=next_sentence)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))

    def data(batches):
        if next_sentence:
            return batches
        return [(x, {"mlm_labels": y["mlm_labels"]}, w) for x, y, w in batches]

    return model, data


def build_keras_hub():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY, max_sequence_length=512, **SIZE
    )
    model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    # Same objective as tfbert: cross-entropy averaged over real predictions.
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        weighted_metrics=[],
    )

    def data(batches):
        return [(x, y["mlm_labels"], w["mlm_labels"]) for x, y, w in batches]

    return model, data


def as_dataset(batches):
    """The batches as a dataset of known length (Keras misreports the epoch loss
    of datasets of unknown length: it averages in one empty step)."""
    stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=4, help="steps per round")
    parser.add_argument(
        "--precision", choices=["float32", "mixed_bfloat16", "both"], default="both"
    )
    args = parser.parse_args()
    precisions = ["float32", "mixed_bfloat16"] if args.precision == "both" else [args.precision]
    batches = real_batches(args.steps)
    # Only the precisions asked for: a CPU without bfloat16 kernels may abort.
    kernels = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
    peaks = {precision: matmul_peak(kernels[precision]) for precision in precisions}
    print(
        "matmul peak: "
        + ", ".join(f"{kernels[p]} {peak / 1e9:.0f} GFLOP/s" for p, peak in peaks.items())
        + f"; {os.cpu_count()} CPUs ({' '.join(cpu_flags()) or 'no AVX2'}); "
        + f"bert_mini, batch {BATCH}, seq {LENGTH}"
    )

    runs = []
    for precision in precisions:
        keras.mixed_precision.set_global_policy(precision)
        keras.utils.set_random_seed(0)
        for name, (model, data), nsp in (
            ("keras-hub BertMaskedLM", build_keras_hub(), False),
            ("tfbert BertPretrainer (MLM)", build_tfbert(False), False),
            ("tfbert BertPretrainer (MLM+NSP)", build_tfbert(True), True),
        ):
            dataset = as_dataset(data(batches))
            model.fit(dataset, epochs=1, verbose=0)  # trace and warm up
            runs.append(
                {
                    "name": name,
                    "precision": precision,
                    "model": model,
                    "dataset": dataset,
                    "nsp": nsp,
                    "times": [],
                    "losses": [],
                }
            )
    keras.mixed_precision.set_global_policy("float32")

    for _ in range(args.rounds):
        for run in runs:
            start = time.perf_counter()
            history = run["model"].fit(run["dataset"], epochs=1, verbose=0)
            run["times"].append((time.perf_counter() - start) / args.steps)
            logs = history.history
            run["losses"].append(logs["mlm_loss" if "mlm_loss" in logs else "loss"][0])

    header = (
        f"{'model':34} {'precision':15} {'seq/s':>7} {'best':>6} {'tokens/s':>9} "
        f"{'TFLOP/s':>8} {'% peak':>7} {'vs keras-hub':>13}  MLM loss per round"
    )
    print(header)
    print("-" * len(header))
    reference = {}
    for run in runs:
        step = statistics.median(run["times"])
        sequences = BATCH / step
        flops = flops_per_step(run["nsp"]) / step
        if run["name"].startswith("keras-hub"):
            reference[run["precision"]] = sequences
        ratio = sequences / reference[run["precision"]]
        curve = " ".join(f"{loss:.2f}" for loss in run["losses"][:: max(1, args.rounds // 5)])
        print(
            f"{run['name']:34} {run['precision']:15} {sequences:7.1f} "
            f"{BATCH / min(run['times']):6.1f} {sequences * LENGTH:9.0f} "
            f"{flops / 1e12:8.3f} {100 * flops / peaks[run['precision']]:6.1f}% "
            f"{ratio:12.2f}x  {curve}"
        )
    print(
        "seq/s: median over rounds (best: fastest round). FLOP/s count the full "
        "model (3x forward); tfbert's last block skips the rows no head reads."
    )
    fp32 = reference.get("float32")
    for run in runs:
        if fp32 and run["precision"] == "mixed_bfloat16" and "MLM+NSP" in run["name"]:
            print(
                f"\ntfbert (MLM+NSP, mixed_bfloat16) vs keras-hub (float32): "
                f"{BATCH / statistics.median(run['times']) / fp32:.2f}x"
            )


if __name__ == "__main__":
    main()
