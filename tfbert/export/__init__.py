"""Export: TF Serving SavedModels, LiteRT and ONNX, each checked against the Keras model."""

from tfbert.export.litert import interpreter as litert_interpreter
from tfbert.export.litert import litert, run_litert
from tfbert.export.onnx import onnx, run_onnx
from tfbert.export.op_check import check_ops, saved_model_ops
from tfbert.export.saved_model import TOKEN_INPUTS, saved_model
from tfbert.export.verify import run_saved_model, saved_model_cli_show, verify_saved_model

__all__ = [
    "litert",
    "litert_interpreter",
    "run_litert",
    "onnx",
    "run_onnx",
    "check_ops",
    "saved_model_ops",
    "TOKEN_INPUTS",
    "run_saved_model",
    "saved_model",
    "saved_model_cli_show",
    "verify_saved_model",
]
