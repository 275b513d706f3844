"""What each compression step buys: parameters, file size, LiteRT latency
and held-out accuracy of a classifier as a phone would run it, and a plot."""

import gzip
import os

import numpy as np

from tfbert.export.litert import interpreter, litert, run_litert
from tfbert.export.verify import median_ms
from tfbert.files import atomic_path

# The phone setting every step is measured in: one sentence of 128 tokens.
LATENCY_SEQUENCE_LENGTH = 128


def gzip_size(path: str) -> int:
    """Bytes of `path` compressed with gzip (level 9): what a download costs.
    Pruned weights are exact zeros, which raw file sizes do not show."""
    with open(path, "rb") as source:
        return len(gzip.compress(source.read(), compresslevel=9))


def measure_litert(
    step: str,
    model,
    tokenizer,
    held_out_texts,
    held_out_labels,
    path: str,
    quantization: str | None = None,
    representative_data=None,
    latency_repeats: int = 20,
    num_threads: int = 1,
) -> dict:
    """Exports `model` to LiteRT at `path` and measures it there.

    Accuracy is the LiteRT file's own on the held-out texts (so a quantized
    step pays for its rounding), latency the median of `latency_repeats`
    batch-1 calls at 128 tokens on `num_threads` threads (a phone core).

    Returns:
        {"step", "parameters", "size", "gzip_size", "latency_ms",
        "accuracy", "path", "quantization"}.
    """
    litert(
        model,
        path,
        quantization=quantization,
        representative_data=representative_data,
        sequence_length=LATENCY_SEQUENCE_LENGTH,
        tokenizer=tokenizer,
    )
    fixed = tokenizer.with_sequence_length(LATENCY_SEQUENCE_LENGTH)
    inputs = {name: value.numpy() for name, value in fixed(list(held_out_texts)).items()}
    logits = run_litert(path, inputs)["logits"]
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == np.asarray(held_out_labels)))
    runner = interpreter(path, num_threads=num_threads).get_signature_runner()
    first = {name: value[:1] for name, value in inputs.items()}
    classifier = getattr(model, "classifier", model)
    return {
        "step": step,
        "parameters": int(classifier.count_params()),
        "size": os.path.getsize(path),
        "gzip_size": gzip_size(path),
        "latency_ms": median_ms(lambda: runner(**first), latency_repeats),
        "accuracy": accuracy,
        "path": path,
        "quantization": quantization or "float32",
    }


def render_compression_table(rows) -> str:
    """The steps side by side, each against the first (the teacher)."""
    first = rows[0]
    lines = [
        f"{'step':<26} {'params':>11} {'size MB':>8} {'gzip MB':>8} {'x smaller':>9} "
        f"{'ms b1/128':>9} {'x faster':>8} {'accuracy':>8} {'of teacher':>10}"
    ]
    for row in rows:
        share = row["accuracy"] / first["accuracy"] if first["accuracy"] else float("nan")
        lines.append(
            f"{row['step']:<26} {row['parameters']:>11,} {row['size'] / 1e6:>8.2f} "
            f"{row['gzip_size'] / 1e6:>8.2f} {first['size'] / row['size']:>9.1f} "
            f"{row['latency_ms']:>9.2f} {first['latency_ms'] / row['latency_ms']:>8.1f} "
            f"{row['accuracy']:>8.3f} {share:>10.1%}"
        )
    return "\n".join(lines)


def plot_compression(rows, path: str, overwrite: bool = False) -> str:
    """A PNG of held-out accuracy against file size and against LiteRT latency.

    Args:
        rows: `compress_classifier`'s (or `measure_litert`'s) rows.
        path: str, the .png file; an existing one is kept unless `overwrite`.

    Example:
        plot_compression(rows, "runs/compress/compression.png")
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, key, label, scale in (
        (axes[0], "size", "LiteRT file size (MB)", 1e-6),
        (axes[1], "latency_ms", "LiteRT latency, batch 1, 128 tokens (ms)", 1.0),
    ):
        x = [row[key] * scale for row in rows]
        y = [row["accuracy"] for row in rows]
        axis.plot(x, y, "o-", color="tab:blue")
        for row, px, py in zip(rows, x, y, strict=True):
            axis.annotate(row["step"], (px, py), textcoords="offset points", xytext=(4, 4))
        axis.set_xlabel(label)
        axis.set_ylabel("held-out accuracy")
        axis.grid(alpha=0.3)
    figure.suptitle("Compression: accuracy against size and latency")
    with atomic_path(path, overwrite=overwrite) as staging:
        figure.savefig(staging, dpi=120, format="png")
    pyplot.close(figure)
    return path


def compress_classifier(
    teacher,
    train_texts,
    train_labels,
    held_out_texts,
    held_out_labels,
    output_dir: str,
    student_layers,
    unlabeled_texts=None,
    head_fraction: float = 0.3,
    ffn_fraction: float = 0.3,
    epochs: int = 2,
    prune_epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    quantization: str = "dynamic_int8",
    trim: bool = True,
    latency_repeats: int = 20,
    log=print,
) -> list[dict]:
    """Teacher -> distilled student -> heads/FFN pruned -> vocabulary trimmed -> int8,
    measured at each step.

    Runs `tfbert.compression.distill_student`, `prune_structure` and
    `trim_vocabulary` (to the pieces of the training and unlabelled texts),
    writes each step's LiteRT file into `output_dir` (`teacher.tflite`,
    `student.tflite`, `pruned.tflite`; with the trimmed vocabulary in
    `trimmed/`: `trimmed.tflite`, `pruned_int8.tflite`) and the final
    student as `student_pruned.keras`
    (a `TextClassifier`, its tokenizer trimmed too), and measures each file
    with `measure_litert`.

    Args:
        teacher: fine-tuned `TextClassifier` (tokenizer and classifier).
        train_texts, train_labels: the labelled training data.
        held_out_texts, held_out_labels: what accuracy is measured on.
        output_dir: str, a new or empty folder (nothing in it is replaced).
        student_layers: teacher blocks the student keeps (DistilBERT-style).
        unlabeled_texts: optional in-domain sentences the teacher labels.
        head_fraction, ffn_fraction: share of heads / FFN neurons removed.
        epochs, prune_epochs: distillation epochs per phase, fine-tuning
            epochs after pruning.
        quantization: "dynamic_int8" (default) or "int8" (calibrated on 200
            training texts) for the last step.
        trim: bool, default True. The trimming step (the token embedding is
            most of a small BERT; texts outside the domain may then be cut
            into shorter pieces).
        log: where progress lines go.

    Returns:
        One row per step (see `measure_litert`), the teacher first.
    """
    from tfbert.compression.classifier_recipe import distill_student, prune_structure
    from tfbert.compression.vocabulary_trimming import trim_vocabulary
    from tfbert.models import TextClassifier

    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise FileExistsError(
            f"{output_dir} is not empty; compress into a new folder so that no earlier "
            "result is replaced."
        )
    os.makedirs(output_dir, exist_ok=True)
    tokenizer, classifier = teacher.tokenizer, teacher.classifier

    def token_ids(texts):
        return {name: value.numpy() for name, value in tokenizer(list(texts)).items()}

    def measure(step, model, file, **settings):
        row = measure_litert(
            step,
            model,
            tokenizer,
            held_out_texts,
            held_out_labels,
            os.path.join(output_dir, file),
            latency_repeats=latency_repeats,
            **settings,
        )
        log(
            f"      {step}: {row['parameters']:,} parameters, {row['size'] / 1e6:.2f} MB, "
            f"{row['latency_ms']:.2f} ms, accuracy {row['accuracy']:.3f}"
        )
        return row

    train_x, train_y = token_ids(train_texts), np.asarray(train_labels)
    rows = [measure("teacher", classifier, "teacher.tflite")]
    unlabeled_x = token_ids(unlabeled_texts) if unlabeled_texts else None
    student = distill_student(
        classifier,
        train_x,
        train_y,
        list(student_layers),
        unlabeled_x=unlabeled_x,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    blocks = len(student_layers)
    rows.append(
        measure(f"student ({blocks} block{'s' * (blocks > 1)})", student, "student.tflite")
    )
    pruned, removed = prune_structure(
        student,
        train_x,
        train_y,
        head_fraction,
        ffn_fraction,
        teacher=classifier,
        epochs=prune_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate / 2,
    )
    heads = sum(len(v) for v in removed["heads"].values())
    neurons = sum(len(v) for v in removed["neurons"].values())
    rows.append(measure(f"pruned (-{heads} heads, -{neurons} FFN)", pruned, "pruned.tflite"))
    final = TextClassifier(tokenizer, pruned, label_names=teacher.label_names)
    if trim:
        final, kept = trim_vocabulary(final, list(train_texts) + list(unlabeled_texts or []))
        tokenizer, pruned = final.tokenizer, final.classifier
        train_x = token_ids(train_texts)
        # Its own folder: the LiteRT files of one folder share one vocab.txt.
        folder = "trimmed"
        step = f"trimmed ({len(kept):,} tokens)"
        rows.append(measure(step, pruned, os.path.join(folder, "trimmed.tflite")))
    else:
        folder = ""
    representative = None
    if quantization == "int8":
        count = min(200, len(train_y))
        representative = [{k: v[i : i + 1] for k, v in train_x.items()} for i in range(count)]
    rows.append(
        measure(
            f"pruned + {quantization}",
            pruned,
            os.path.join(folder, "pruned_int8.tflite"),
            quantization=quantization,
            representative_data=representative,
        )
    )
    final.save(os.path.join(output_dir, "student_pruned.keras"))
    return rows
