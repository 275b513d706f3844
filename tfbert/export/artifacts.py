"""Every export of one model, each verified: what `tfbert export` and the
quickstart's last step run.

rows = export_artifacts(text_classifier, "exports", texts)
# [{"artifact": "Keras, float32 (in process)", ...}, {"artifact": "exports/model/1",
#   "size": 17_612_345, "max_abs_diff": 6e-08, "label_agreement": 1.0, "batch1_ms": 1.9}, ...]
"""

import os

from tfbert.export.litert import litert
from tfbert.export.onnx import onnx
from tfbert.export.op_check import check_ops
from tfbert.export.saved_model import prepare, saved_model
from tfbert.export.verify import median_ms, verify_litert, verify_onnx, verify_saved_model
from tfbert.models import BertClassifier

FORMATS = ("saved_model", "litert", "onnx")
KERAS_ROW = "Keras, float32 (in process)"


def export_artifacts(
    model,
    output_dir: str,
    texts,
    formats=FORMATS,
    tokenizer=None,
    model_name: str = "model",
    sequence_length: int | None = None,
    quantization: str | None = None,
    include_tokenizer: bool = False,
    calibration_texts=None,
    latency_repeats: int = 20,
) -> list[dict]:
    """Exports `model` to each of `formats`, verifies every artifact against
    it on `texts` and returns one report per artifact, after a first row
    for the Keras model itself.

    Layout: the SavedModel in `output_dir/model_name/<version>/` (TF
    Serving's; the next free version), `output_dir/model.onnx`,
    `output_dir/model.tflite` with its sidecars. Existing files are never
    replaced: an existing `model.onnx` or `model.tflite` is refused
    (`FileExistsError`) before anything is written. The SavedModel must also pass
    `check_ops(path, "tf-serving")`, the LiteRT file `check_ops(path,
    "litert")`.

    Args:
        model: `TextClassifier`, or a classifier/backbone model with `tokenizer`.
        output_dir: str.
        texts: list of str to verify on; 50 or more make the label share of
            a quantized LiteRT model meaningful.
        formats: any of "saved_model", "litert", "onnx".
        tokenizer: `BertTokenizer`; taken from a `TextClassifier`.
        model_name: str, default "model". The SavedModel's folder (TF
            Serving's model name).
        sequence_length: int or None (default: the tokenizer's). LiteRT's
            fixed input length.
        quantization: LiteRT's (see `litert`); "int8" calibrates on
            `calibration_texts` (default `texts`).
        include_tokenizer: bool, default False. LiteRT takes raw text.
        latency_repeats: int, default 20. Calls timed per artifact (median
            batch-1 milliseconds); 0 skips timing.

    Returns:
        A list of {"artifact", "size" (bytes; None for Keras),
        "max_abs_diff", "label_agreement", "batch1_ms"}.

    Raises:
        VerificationError: an artifact does not behave like `model`.
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"Unknown export format(s) {unknown}; use any of {list(FORMATS)}.")
    model, tokenizer, label_names = prepare(model, tokenizer)  # float32, unwrapped
    if tokenizer is None:
        raise ValueError(
            "export_artifacts needs a tokenizer to make the verification inputs: pass a "
            "TextClassifier or tokenizer=."
        )
    for name, file in (("onnx", "model.onnx"), ("litert", "model.tflite")):
        path = os.path.join(output_dir, file)
        if name in formats and os.path.exists(path):  # refused before any export is written
            raise FileExistsError(f"{path} exists; export into another output_dir.")
    texts = [str(text) for text in texts]
    first = tokenizer(texts[:1])
    batch1_ms = None
    if latency_repeats > 0:
        batch1_ms = median_ms(lambda: model(first, training=False), latency_repeats)
    rows = [
        {
            "artifact": KERAS_ROW,
            "size": None,
            "max_abs_diff": 0.0,
            "label_agreement": 1.0 if isinstance(model, BertClassifier) else None,
            "batch1_ms": batch1_ms,
        }
    ]
    common = {"tokenizer": tokenizer, "latency_repeats": latency_repeats}
    if "saved_model" in formats:
        export_dir = os.path.join(output_dir, model_name)
        path = saved_model(model, export_dir, tokenizer=tokenizer, label_names=label_names)
        report = verify_saved_model(path, model, texts, **common)
        check_ops(path, "tf-serving")
        rows.append(report)
    if "onnx" in formats:
        path = onnx(model, os.path.join(output_dir, "model.onnx"), tokenizer=tokenizer)
        rows.append(verify_onnx(path, model, texts, **common))
    if "litert" in formats:
        length = sequence_length or tokenizer.sequence_length
        calibration = None
        if quantization == "int8":
            fixed = tokenizer.with_sequence_length(length)
            ids = {k: v.numpy() for k, v in fixed(list(calibration_texts or texts)).items()}
            calibration = [
                {name: value[i : i + 1] for name, value in ids.items()}
                for i in range(len(ids["token_ids"]))
            ]
        path = litert(
            model,
            os.path.join(output_dir, "model.tflite"),
            quantization=quantization,
            representative_data=calibration,
            include_tokenizer=include_tokenizer,
            sequence_length=length,
            tokenizer=tokenizer,
            label_names=label_names,
        )
        check_ops(path, "litert")
        rows.append(verify_litert(path, model, texts, **common))
    for row in rows:
        row.pop("requests", None)
    return rows
