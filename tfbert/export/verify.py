"""Checks an exported artifact against the Keras model, in a fresh process."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

# Runs in a fresh interpreter that imports only TensorFlow and tensorflow-text,
# as TF Serving would load the model: no tfbert, no Keras.
_SAVED_MODEL_CHILD = """
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

path, requests_file, answers_file = sys.argv[1:4]
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
        if value.dtype != tf.string:
            answers[f"{index}/{name}"] = value.numpy()
assert not any(name.startswith("tfbert") for name in sys.modules), "tfbert was imported"
np.savez(answers_file, **answers)
"""


def saved_model_cli_show(path: str) -> str:
    """`saved_model_cli show --all` of `path`; raises when it fails."""
    cli = shutil.which("saved_model_cli") or os.path.join(
        os.path.dirname(sys.executable), "saved_model_cli"
    )
    done = subprocess.run(
        [cli, "show", "--all", "--dir", path], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"saved_model_cli show --all failed for {path}:\n{done.stderr[-2000:]}")
    return done.stdout


def run_saved_model(path: str, requests: list) -> list[dict]:
    """Calls signatures of the SavedModel at `path` in a fresh process that
    imports only tensorflow and tensorflow_text.

    Args:
        requests: list of (signature name, {input name: nested lists}).

    Returns:
        One dict of NumPy outputs (strings left out) per request.
    """
    with tempfile.TemporaryDirectory(prefix="tfbert-verify-") as folder:
        requests_file = os.path.join(folder, "requests.json")
        answers_file = os.path.join(folder, "answers.npz")
        with open(requests_file, "w", encoding="utf-8") as f:
            json.dump(requests, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run(
            [sys.executable, "-c", _SAVED_MODEL_CHILD, path, requests_file, answers_file],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"Loading and calling {path} in a fresh process failed:\n{done.stderr[-3000:]}"
            )
        with np.load(answers_file) as data:
            answers = [{} for _ in requests]
            for key in data.files:
                index, name = key.split("/", 1)
                answers[int(index)][name] = data[key]
    return answers


def max_difference(expected: dict, actual: dict) -> float:
    """Largest absolute difference over the float outputs both dicts share."""
    shared = [name for name in expected if name in actual]
    if not shared:
        raise ValueError(f"No outputs in common: {sorted(expected)} vs {sorted(actual)}.")
    worst = 0.0
    for name in shared:
        a, b = np.asarray(expected[name]), np.asarray(actual[name])
        if a.shape != b.shape:
            raise AssertionError(f"Output {name!r}: shape {b.shape}, expected {a.shape}.")
        worst = max(worst, float(np.max(np.abs(a.astype("float64") - b.astype("float64")))))
    return worst


def verify_saved_model(
    path: str, model, texts, tokenizer=None, lengths=(16, 48), atol: float = 1e-5
) -> dict:
    """Checks the SavedModel at `path` against `model`; returns a report.

    `saved_model_cli show --all` must succeed; then a fresh process that
    imports only tensorflow and tensorflow_text calls `serving_default` on
    raw `texts` (paired with themselves reversed when it takes `text_pair`)
    at batch sizes 1 and len(texts), and
    `serve_token_ids` at two sequence `lengths`, and every float output must
    match the Keras model within `atol`. A mixed-precision model is
    compared as the float32 copy that `saved_model` exports.
    """
    from tfbert.export.saved_model import _outputs, prepare

    model, tokenizer, label_names = prepare(model, tokenizer)
    if tokenizer is None:
        raise ValueError("verify_saved_model needs the tokenizer that makes the token ids.")
    texts = [str(text) for text in texts]
    requests, expected = [], []
    listing = saved_model_cli_show(path)
    for signature in ("serving_default", "serve_token_ids"):
        if f"signature_def['{signature}']" not in listing:
            raise AssertionError(f"{path} has no {signature!r} signature:\n{listing[:2000]}")
    pairs = "['text_pair']" in listing
    for batch in ({"text": texts[:1]}, {"text": texts}):
        if pairs:  # second segments: the same texts in reverse order
            batch["text_pair"] = batch["text"][::-1]
        requests.append(("serving_default", batch))
        expected.append(
            _outputs(model, tokenizer(batch["text"], batch.get("text_pair")), label_names)
        )
    config = tokenizer.get_config()
    for length in lengths:
        short = type(tokenizer).from_config({**config, "sequence_length": length})
        inputs = {name: value.numpy().tolist() for name, value in short(texts).items()}
        requests.append(("serve_token_ids", inputs))
        expected.append(_outputs(model, short(texts), label_names))
    answers = run_saved_model(path, requests)
    differences = [
        max_difference({k: np.asarray(v) for k, v in want.items() if v.dtype != "string"}, got)
        for want, got in zip(expected, answers, strict=True)
    ]
    worst = max(differences)
    if worst > atol:
        raise AssertionError(
            f"{path} differs from the Keras model by {worst:.3g} (allowed {atol:g}); "
            f"per request: {[f'{d:.3g}' for d in differences]}."
        )
    return {"max_abs_diff": worst, "requests": len(requests)}
