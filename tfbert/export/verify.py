"""Checks exported artifacts against the Keras model they came from.

report = verify_saved_model(path, text_classifier, texts)   # TF-only process, 1e-5
report = verify_onnx("model.onnx", text_classifier, texts)  # ONNX Runtime, 1e-4
report = verify_litert("model.tflite", text_classifier, texts)
# {"artifact", "size", "max_abs_diff", "label_agreement", "batch1_ms", "requests"};
# a failed check raises VerificationError naming the artifact, check and numbers.
"""

import atexit
import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from tfbert.export.litert import interpreter, run_litert
from tfbert.export.onnx import onnx_quantization, run_onnx
from tfbert.export.saved_model import model_outputs, prepare, signature_io, token_axes

# Runs in a separate interpreter that imports only TensorFlow and
# tensorflow-text, as TF Serving would load the model: no tfbert, no Keras.
# It stays up for later checks (importing TensorFlow costs 5-9 s of each
# check otherwise) and answers one request per line on stdin: [request id,
# path, requests file, answers file, show]; with show it first runs
# `saved_model_cli show --all` on the model. Each answer is one JSON line
# on a private copy of stdout: file descriptor 1 itself goes to stderr, so
# nothing a model or TensorFlow prints can be taken for an answer.
_SAVED_MODEL_CHILD = """
import os, sys
answer = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
import contextlib, gc, io, json, traceback
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)
from tensorflow.python.tools import saved_model_cli

def serve(path, requests_file, answers_file, show):
    if show:
        sys.argv = ["saved_model_cli", "show", "--all", "--dir", path]
        with contextlib.redirect_stdout(io.StringIO()):  # the listing itself is not needed
            try:
                saved_model_cli.main()
            except SystemExit as stop:
                if stop.code:
                    message = f"saved_model_cli show --all failed for {path}: exit {stop.code}"
                    raise RuntimeError(message)
    with open(requests_file) as f:
        requests = json.load(f)
    model = tf.saved_model.load(path)
    answers = {}
    for index, (signature, inputs) in enumerate(requests):
        feed = {}
        for name, value in inputs.items():
            dtype = tf.string if isinstance(value[0], str) else tf.int32
            feed[name] = tf.constant(value, dtype)
        outputs = model.signatures[signature](**feed)
        for name, value in outputs.items():
            value = value.numpy()
            if value.dtype == object:  # strings, as unicode arrays (no pickling)
                value = np.array([v.decode("utf-8") for v in value.ravel()]).reshape(value.shape)
            answers[f"{index}/{name}"] = value
    assert not any(name.startswith("tfbert") for name in sys.modules), "tfbert was imported"
    np.savez(answers_file, **answers)

for line in sys.stdin:
    request_id, *request = json.loads(line)
    try:
        serve(*request)
        reply = {"id": request_id, "error": None}
    except BaseException:
        reply = {"id": request_id, "error": traceback.format_exc()}
    gc.collect()
    sys.stderr.flush()
    answer.write(json.dumps(reply) + "\\n")
    answer.flush()
"""


class _SavedModelServer:
    """The long-lived child interpreter of `_SAVED_MODEL_CHILD`: started on
    first use, one request at a time, and replaced by a new one after it
    dies, after any request that did not end in its answer (timeout,
    interrupt), after `RESTART_AFTER` requests (repeated SavedModel loads
    grow a process's memory) and in a forked process. Its environment is
    the parent's when it starts."""

    RESTART_AFTER = 50

    def __init__(self):
        self._child = None
        self._log = None
        self._pid = None
        self._served = 0
        self._requests = 0
        self._lock = threading.Lock()

    def _start(self):
        self._log = tempfile.TemporaryFile(mode="a+b", prefix="tfbert-verify-")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_FORCE_GPU_ALLOW_GROWTH="true")
        self._child = subprocess.Popen(
            [sys.executable, "-c", _SAVED_MODEL_CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self._pid, self._served = os.getpid(), 0

    def _stop(self):
        if self._child is not None and self._pid == os.getpid():
            self._child.kill()
            self._child.wait()
            for stream in (self._child.stdin, self._child.stdout, self._log):
                with contextlib.suppress(OSError):
                    stream.close()
        self._child = None

    def _log_since(self, offset: int) -> str:
        self._log.seek(offset)
        return self._log.read().decode("utf-8", errors="replace")[-3000:]

    def _answer(self, timeout: float) -> bytes:
        """The child's next line, b"" if it closed its end; TimeoutError after `timeout`."""
        deadline, data = time.monotonic() + timeout, b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._child.stdout], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"no answer within {timeout} s")
            chunk = os.read(self._child.stdout.fileno(), 1 << 16)
            if not chunk:
                return b""
            data += chunk
        return data

    def call(self, path, requests_file, answers_file, show, timeout=600) -> str | None:
        """None, or the child's error text (with what it logged meanwhile)."""
        with self._lock:
            if (
                self._child is None
                or self._pid != os.getpid()
                or self._child.poll() is not None
                or self._served >= self.RESTART_AFTER
            ):
                self._stop()
                self._start()
            self._requests += 1
            request_id = self._requests
            offset = self._log.seek(0, os.SEEK_END)
            answered = False
            try:
                line = json.dumps([request_id, path, requests_file, answers_file, show])
                with contextlib.suppress(BrokenPipeError):  # it died: no answer follows
                    self._child.stdin.write(line.encode() + b"\n")
                    self._child.stdin.flush()
                try:
                    data = self._answer(timeout)
                except TimeoutError as error:
                    return f"{error}:\n{self._log_since(offset)}"
                if not data:
                    return f"the process died:\n{self._log_since(offset)}"
                reply = json.loads(data)
                if reply.get("id") != request_id:
                    return f"an answer to another request: {data[:300]!r}"
                answered = True
                self._served += 1
                if reply["error"] is not None:
                    return f"{reply['error']}{self._log_since(offset)}"
                return None
            finally:
                if not answered:  # out of step with its requests: never reused
                    self._stop()


_server = _SavedModelServer()
atexit.register(_server._stop)


def run_saved_model(path: str, requests: list, show_all: bool = False) -> list[dict]:
    """Calls signatures of the SavedModel at `path` in a separate process
    that imports only tensorflow and tensorflow_text (no tfbert, no Keras;
    it stays up for later calls and is restarted if it dies).

    Args:
        requests: list of (signature name, {input name: nested lists}).
        show_all: bool, default False. First run `saved_model_cli show
            --all` in that process; the call fails when it fails.

    Returns:
        One dict of NumPy outputs per request (strings as unicode arrays).
    """
    with tempfile.TemporaryDirectory(prefix="tfbert-verify-") as folder:
        requests_file = os.path.join(folder, "requests.json")
        answers_file = os.path.join(folder, "answers.npz")
        with open(requests_file, "w", encoding="utf-8") as f:
            json.dump(requests, f)
        error = _server.call(os.path.abspath(path), requests_file, answers_file, show_all)
        if error is not None:
            raise RuntimeError(
                f"Loading and calling {path} in a separate process failed:\n{error[-6000:]}"
            )
        with np.load(answers_file) as data:
            answers = [{} for _ in requests]
            for key in data.files:
                index, name = key.split("/", 1)
                answers[int(index)][name] = data[key]
    return answers


class VerificationError(ValueError):
    """An exported artifact does not behave like the Keras model it came
    from; the message names the artifact, the failed check and its numbers."""


# Share of the Keras model's labels a quantized LiteRT model must keep by
# default (fine-tuned MiniLM, 1,000 held-out sentences: float16 100%,
# dynamic_int8 99.2%, int8 98.1%; tests/export/test_litert.py).
LABEL_AGREEMENT = {"float16": 0.99, "dynamic_int8": 0.96, "int8": 0.96}


def median_ms(call, repeats: int = 20) -> float:
    """Median wall time of `call()` in milliseconds over `repeats` calls,
    after one warm-up call (tracing, allocation)."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def artifact_size(path: str) -> int:
    """Bytes of a file, or of every file under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def max_difference(expected: dict, actual: dict, artifact: str = "the artifact") -> float:
    """Largest absolute difference over the float outputs both dicts share
    (labels are compared by `label_agreement`); raises `VerificationError`
    when they share none or a shape differs."""
    shared = [name for name in expected if name in actual]
    if not shared:
        raise VerificationError(
            f"{artifact} fails the output check: it returns {sorted(actual)}, the Keras "
            f"model {sorted(expected)}; no output in common."
        )
    worst = 0.0
    for name in shared:
        a, b = np.asarray(expected[name]), np.asarray(actual[name])
        if a.shape != b.shape:
            raise VerificationError(
                f"{artifact} fails the shape check: output {name!r} has shape {b.shape}, "
                f"the Keras model's {a.shape}."
            )
        if a.dtype.kind == "f":
            worst = max(worst, float(np.max(np.abs(a.astype("float64") - b.astype("float64")))))
    return worst


def _numeric(outputs: dict) -> dict:
    """NumPy copies of the non-string outputs."""
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    return {name: value for name, value in arrays.items() if value.dtype.kind in "biuf"}


def _check_difference(artifact: str, expected: list, answers: list, atol: float | None) -> float:
    """The largest difference over pairs of (Keras, artifact) outputs; raises
    `VerificationError` above `atol` (None: only names and shapes count)."""
    differences = [
        max_difference(want, got, artifact) for want, got in zip(expected, answers, strict=True)
    ]
    worst = max(differences)
    if atol is not None and worst > atol:
        raise VerificationError(
            f"{artifact} fails the output check: it differs from the Keras model by up to "
            f"{worst:.3g} (allowed {atol:g}; per request {[f'{d:.3g}' for d in differences]}). "
            "Was it exported from this model? Export it again from the model you verify "
            "against."
        )
    return worst


def _first_positions(expected: dict, actual: dict, axes: dict, length: int):
    """`(expected, actual)` with each per-token output they share at one
    shape cut to its first `length` positions along its token `axes`
    (`token_axes`); a shape that differs is left for `max_difference`."""
    expected, actual = dict(expected), dict(actual)
    for name, output_axes in axes.items():
        if name not in expected or name not in actual:
            continue
        if expected[name].shape != actual[name].shape:
            continue
        for axis in output_axes:
            expected[name] = expected[name].take(range(length), axis=axis)
            actual[name] = actual[name].take(range(length), axis=axis)
    return expected, actual


def _label_agreement(expected: dict, actual: dict) -> float | None:
    """Share of examples whose `label` equals the Keras model's; None
    without labels (not a classifier)."""
    if "label" not in expected or "label" not in actual:
        return None
    return float(np.mean(np.asarray(expected["label"]) == np.asarray(actual["label"])))


def _report(path, max_abs_diff, label_agreement, batch1_ms, requests) -> dict:
    return {
        "artifact": path,
        "size": artifact_size(path),
        "max_abs_diff": max_abs_diff,
        "label_agreement": label_agreement,
        "batch1_ms": batch1_ms,
        "requests": requests,
    }


def _check_labels(artifact, quantization, agreement, count, min_label_agreement, advice):
    """The label gate of a quantized artifact: its labels must equal the Keras
    model's on `LABEL_AGREEMENT[quantization]` (or `min_label_agreement`) of the texts."""
    if quantization == "float32" or agreement is None:
        return
    bar = LABEL_AGREEMENT.get(quantization, 1.0)
    bar = bar if min_label_agreement is None else min_label_agreement
    if agreement < bar:
        equal = int(round(agreement * count))
        raise VerificationError(
            f"{artifact} fails the label check: {equal} of {count} labels "
            f"({agreement:.1%}) equal the Keras model's, below the required {bar:.1%}. "
            f"{advice}, or pass min_label_agreement= to accept it."
        )


def verify_saved_model(
    path: str,
    model,
    texts,
    tokenizer=None,
    lengths=(16, 48),
    atol: float = 1e-5,
    latency_repeats: int = 0,
) -> dict:
    """Checks the SavedModel at `path` against `model`; returns a report.

    Both signatures must be there; a separate process that imports only
    tensorflow and tensorflow_text runs `saved_model_cli show --all`
    (which must succeed), then calls `serving_default` on
    raw `texts` (paired with themselves reversed when it takes `text_pair`)
    at batch sizes 1 and len(texts), and
    `serve_token_ids` at two sequence `lengths`, and every float output
    must match the Keras model within `atol` (labels then agree but at
    near-ties; `label_agreement` reports them); per-token outputs keep the
    request's length but are compared up to the longest text's last token
    (both signatures may run at a bucketed length). A
    mixed-precision model is compared as the float32 copy that
    `saved_model` exports.

    Args:
        latency_repeats: int, default 0. When > 0, also the median time of
            a batch-1 `serve_token_ids` call (loaded in this process).

    Returns:
        {"artifact": path, "size": bytes, "max_abs_diff", "label_agreement"
        (share of `serving_default` labels equal to Keras'; None for models
        without labels), "batch1_ms" (None unless timed), "requests"}.

    Raises:
        VerificationError: a signature is missing or an output differs.
    """
    model, tokenizer, label_names = prepare(model, tokenizer)
    if tokenizer is None:
        raise ValueError("verify_saved_model needs the tokenizer that makes the token ids.")
    artifact = f"SavedModel {path}"
    texts = [str(text) for text in texts]
    requests, expected = [], []
    signatures = signature_io(path)
    for signature in ("serving_default", "serve_token_ids"):
        if signature not in signatures:
            raise VerificationError(
                f"{artifact} fails the signature check: it has no {signature!r} signature "
                f"(export it with tfbert.export.saved_model); it has {sorted(signatures)}."
            )
    pairs = "text_pair" in signatures["serving_default"]["inputs"]
    masks = []  # the padding mask of each request
    for batch in ({"text": texts[:1]}, {"text": texts}):
        if pairs:  # second segments: the same texts in reverse order
            batch["text_pair"] = batch["text"][::-1]
        requests.append(("serving_default", batch))
        token_inputs = tokenizer(batch["text"], batch.get("text_pair"))
        expected.append(_numeric(model_outputs(model, token_inputs, label_names)))
        masks.append(token_inputs["padding_mask"])
    for length in lengths:
        token_inputs = tokenizer.with_sequence_length(length)(texts)
        requests.append(
            ("serve_token_ids", {k: v.numpy().tolist() for k, v in token_inputs.items()})
        )
        expected.append(_numeric(model_outputs(model, token_inputs, label_names)))
        masks.append(token_inputs["padding_mask"])
    answers = run_saved_model(path, requests, show_all=True)
    axes = token_axes(model, label_names)
    longest = [int(np.max(np.sum(mask, axis=1))) for mask in masks]  # in tokens
    for index, length in enumerate(longest):
        expected[index], answers[index] = _first_positions(
            expected[index], answers[index], axes, length
        )
    worst = _check_difference(artifact, expected, answers, atol)
    batch1_ms = None
    if latency_repeats > 0:
        import tensorflow as tf

        serve = tf.saved_model.load(path).signatures["serve_token_ids"]
        one = tokenizer(texts[:1])
        batch1_ms = median_ms(lambda: serve(**one), latency_repeats)
    agreement = _label_agreement(expected[1], answers[1])
    return _report(path, worst, agreement, batch1_ms, len(requests))


def verify_onnx(
    path: str,
    model,
    texts,
    tokenizer=None,
    lengths=(16, 48),
    atol: float | None = None,
    latency_repeats: int = 0,
    min_label_agreement: float | None = None,
) -> dict:
    """Checks the ONNX file at `path` against `model` under ONNX Runtime
    (CPU); returns a report like `verify_saved_model`'s.

    `texts` are tokenized at the tokenizer's own length (batch sizes 1 and
    len(texts)) and at each of `lengths`. A float32 file's float outputs
    must match the Keras model within `atol` (default 1e-4). A
    "dynamic_int8" file (`onnx(..., quantization="dynamic_int8")`) differs
    by design: its labels must equal the Keras model's on at least
    `min_label_agreement` of `texts` (default `LABEL_AGREEMENT`, 0.96), its
    values are checked only when `atol` is given. `label_agreement` is
    measured on the full batch at the tokenizer's length, `batch1_ms` (with
    `latency_repeats` > 0) on its first text.

    Raises:
        VerificationError: the outputs' names, shapes, values or labels differ.
    """
    model, tokenizer, _ = prepare(model, tokenizer)
    if tokenizer is None:
        raise ValueError("verify_onnx needs the tokenizer that makes the token ids.")
    quantization = onnx_quantization(path)
    if quantization == "float32" and atol is None:
        atol = 1e-4
    artifact = f"ONNX file {path}" + ("" if quantization == "float32" else f" ({quantization})")
    texts = [str(text) for text in texts]
    full = {k: v.numpy() for k, v in tokenizer(texts).items()}
    batches = [{k: v[:1] for k, v in full.items()}, full]
    for length in lengths:
        packed = tokenizer.with_sequence_length(length)(texts)
        batches.append({k: v.numpy() for k, v in packed.items()})
    expected = [_numeric(model_outputs(model, batch)) for batch in batches]
    answers = [run_onnx(path, batch) for batch in batches]
    if sorted(answers[0]) != sorted(expected[0]):
        raise VerificationError(
            f"{artifact} fails the output check: it returns {sorted(answers[0])}, the Keras "
            f"model {sorted(expected[0])}. Was it exported from this model?"
        )
    worst = _check_difference(artifact, expected, answers, atol)
    batch1_ms = None
    if latency_repeats > 0:
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        batch1_ms = median_ms(lambda: session.run(None, batches[0]), latency_repeats)
    agreement = _label_agreement(expected[1], answers[1])
    _check_labels(
        artifact,
        quantization,
        agreement,
        len(texts),
        min_label_agreement,
        "Export it in float32 (quantization=None)",
    )
    return _report(path, worst, agreement, batch1_ms, len(batches))


def verify_litert(
    path: str,
    model,
    texts,
    tokenizer=None,
    atol: float | None = None,
    min_label_agreement: float | None = None,
    latency_repeats: int = 0,
) -> dict:
    """Checks the `.tflite` file at `path` against `model` with
    ai_edge_litert's interpreter; returns a report like
    `verify_saved_model`'s.

    How the file was exported is read from its `<path>.json` (written by
    `litert`): the fixed sequence length, the quantization and whether the
    tokenizer is inside (then raw `texts` go in, paired with themselves
    reversed when it takes `text_pair`; else the tokenizer's ids at the
    fixed length). A float32 file must match every float output within
    `atol` (default 1e-4). A quantized file's outputs
    differ by design: its labels must equal the Keras model's on at least
    `min_label_agreement` of `texts` (default `LABEL_AGREEMENT`, e.g. 0.96
    for dynamic_int8), and its values are checked only when `atol` is
    given. Use 50 or more texts for the share to mean something. With the
    tokenizer inside, texts with rare control characters (U+0085) may be
    tokenized differently (see `litert`).

    Raises:
        VerificationError: an output or the label share misses its bound.
    """
    model, tokenizer, _ = prepare(model, tokenizer)
    if tokenizer is None:
        raise ValueError("verify_litert needs the tokenizer that makes the token ids.")
    metadata_file = path + ".json"
    if not os.path.isfile(metadata_file):
        raise ValueError(
            f"{metadata_file} is missing; verify_litert reads how {path} was exported from "
            "the metadata tfbert.export.litert writes beside it. Export it again with litert."
        )
    with open(metadata_file, encoding="utf-8") as f:
        metadata = json.load(f)
    quantization = metadata["quantization"]
    artifact = f"LiteRT file {path} ({quantization})"
    texts = [str(text) for text in texts]
    fixed = tokenizer.with_sequence_length(metadata["sequence_length"])
    if metadata["tokenizer_inside"]:
        feed = {"text": texts}
        if "text_pair" in metadata["inputs"]:
            feed["text_pair"] = texts[::-1]
        token_inputs = fixed(feed["text"], feed.get("text_pair"))
        first = {name: np.array(values[:1], dtype=object) for name, values in feed.items()}
    else:
        feed = {k: v.numpy() for k, v in fixed(texts).items()}
        token_inputs = feed
        first = {name: values[:1] for name, values in feed.items()}
    expected = _numeric(model_outputs(model, token_inputs))
    got = run_litert(path, feed)
    if quantization == "float32" and atol is None:
        atol = 1e-4
    # A quantized file's values are checked only with `atol`, its labels below.
    worst = _check_difference(artifact, [expected], [got], atol)
    agreement = _label_agreement(expected, got)
    _check_labels(
        artifact,
        quantization,
        agreement,
        len(texts),
        min_label_agreement,
        "Quantize less (float16, or 'int8' with its default float_layers)",
    )
    batch1_ms = None
    if latency_repeats > 0:
        runner = interpreter(path).get_signature_runner()
        batch1_ms = median_ms(lambda: runner(**first), latency_repeats)
    return _report(path, worst, agreement, batch1_ms, len(texts))
