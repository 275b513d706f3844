"""LiteRT (TFLite) export for phones: float32, float16, dynamic-range int8 or full int8."""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfbert.export.saved_model import TOKEN_INPUTS, _outputs, prepare

QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")


def litert(
    model,
    path: str,
    quantization: str | None = None,
    representative_data=None,
    sequence_length: int = 128,
    tokenizer=None,
    label_names=None,
    overwrite: bool = False,
) -> str:
    """Writes `model` as a `.tflite` file taking int32 `token_ids`,
    `segment_ids`, `padding_mask` of shape (1, sequence_length); returns `path`.

    Beside it, `<path>.json` holds what a mobile app needs: input and output
    names, sequence length, quantization, label names and the vocabulary file
    name (the tokenizer's `vocab.txt` is written next to the model).

    Args:
        model: a built tfbert backbone model or `TextClassifier`.
        path: str ending in ".tflite"; kept unless `overwrite`.
        quantization: None (float32), "float16" (weights in half precision),
            "dynamic_int8" (int8 weights, float activations) or "int8"
            (int8 weights and activations calibrated on `representative_data`,
            float kept where an op has no int8 kernel). Measured on a
            fine-tuned MiniLM: "dynamic_int8" keeps 97%+ of the float
            model's labels, "int8" only about 76% (LayerNorm, softmax and
            GELU lose too much in 8 bits): prefer "dynamic_int8".
        representative_data: for "int8": an iterable of input dicts
            (`token_ids`, `segment_ids`, `padding_mask`, batch 1), a few
            hundred real examples.
        sequence_length: int, default 128. The fixed input length.
        tokenizer: `BertTokenizer`; taken from a `TextClassifier`.
        label_names: optional class names for the metadata.
    """
    model, tokenizer, label_names = prepare(model, tokenizer, label_names)
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}; use one of {QUANTIZATIONS}.")
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' calibrates activation ranges on real inputs: pass "
            "representative_data (an iterable of token-id dicts, e.g. a few hundred "
            "tokenized training texts), or use 'dynamic_int8', which needs none."
        )
    if not path.endswith(".tflite"):
        raise ValueError(f"LiteRT files end in .tflite; received {path!r}.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another path.")

    signature = {
        name: tf.TensorSpec((1, sequence_length), tf.int32, name=name) for name in TOKEN_INPUTS
    }

    def serve(inputs):
        outputs = _outputs(model, inputs, None)
        return {name: value for name, value in outputs.items() if value.dtype != tf.string}

    # Through a SavedModel, as Keras' own LiteRT export does: the converter
    # then sees the model's variables as constants to fold in.
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[signature])
    with tempfile.TemporaryDirectory(prefix="tfbert-litert-") as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":

            def calibration():
                for example in representative_data:
                    yield {name: np.asarray(example[name], np.int32) for name in TOKEN_INPUTS}

            converter.representative_dataset = calibration
        flatbuffer = converter.convert()
        signatures = tf.saved_model.load(saved).signatures
        output_names = sorted(signatures["serving_default"].structured_outputs)

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    staged = os.path.join(folder, f".staged-{os.getpid()}-{os.path.basename(path)}")
    with open(staged, "wb") as f:
        f.write(flatbuffer)
    os.replace(staged, path)
    metadata = {
        "inputs": {
            name: {"dtype": "int32", "shape": [1, sequence_length]} for name in TOKEN_INPUTS
        },
        "outputs": output_names,
        "sequence_length": sequence_length,
        "quantization": quantization or "float32",
        "label_names": list(label_names) if label_names else None,
        "vocabulary": None,
    }
    if tokenizer is not None:
        vocabulary = os.path.join(folder, "vocab.txt")
        if not os.path.exists(vocabulary):
            with open(vocabulary, "w", encoding="utf-8") as f:
                f.write("\n".join(tokenizer.vocabulary) + "\n")
        metadata["vocabulary"] = "vocab.txt"
        metadata["lowercase"] = tokenizer.lowercase
    with open(path + ".json", "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)
    return path


def run_litert(path: str, inputs: dict) -> dict:
    """Outputs of the `.tflite` model at `path` for a batch of inputs, one
    example at a time, with ai_edge_litert's interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    count = len(inputs["token_ids"])
    results = {}
    for index in range(count):
        feed = {
            name: np.asarray(inputs[name][index : index + 1], np.int32) for name in TOKEN_INPUTS
        }
        for name, value in runner(**feed).items():
            results.setdefault(name, []).append(value[0])
    return {name: np.stack(values) for name, values in results.items()}
