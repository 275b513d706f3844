"""Export: TF Serving SavedModels, LiteRT and ONNX, each checked against the Keras model."""

from tfbert.export.artifacts import export_artifacts
from tfbert.export.compression_report import (
    compress_classifier,
    gzip_size,
    measure_litert,
    plot_compression,
    render_compression_table,
)
from tfbert.export.litert import interpreter as litert_interpreter
from tfbert.export.litert import litert, run_litert, translator_litert
from tfbert.export.onnx import onnx, onnx_quantization, run_onnx
from tfbert.export.op_check import check_ops, saved_model_ops
from tfbert.export.saved_model import TOKEN_INPUTS, model_outputs, saved_model
from tfbert.export.verify import (
    VerificationError,
    run_saved_model,
    verify_litert,
    verify_onnx,
    verify_saved_model,
)

__all__ = [
    "TOKEN_INPUTS",
    "VerificationError",
    "check_ops",
    "compress_classifier",
    "export_artifacts",
    "gzip_size",
    "litert",
    "litert_interpreter",
    "measure_litert",
    "model_outputs",
    "onnx",
    "onnx_quantization",
    "plot_compression",
    "render_compression_table",
    "run_litert",
    "run_onnx",
    "run_saved_model",
    "saved_model",
    "saved_model_ops",
    "translator_litert",
    "verify_litert",
    "verify_onnx",
    "verify_saved_model",
]
