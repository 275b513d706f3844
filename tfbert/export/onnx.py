"""ONNX export (token ids in) through tf2onnx, checked with ONNX Runtime."""

import os

import numpy as np
import tensorflow as tf

from tfbert.export.saved_model import TOKEN_INPUTS, model_outputs, prepare
from tfbert.files import atomic_path


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: ONNX has no Erfc (TensorFlow's exact GELU uses it);
    erfc(x) = 1 - erf(x), exact to float32 rounding."""
    from tf2onnx import utils

    node.type = "Erf"
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1.0, np.float32))
    ctx.insert_new_node_on_output(
        "Sub",
        node.output[0],
        name=utils.make_name(f"{node.name}_erfc"),
        inputs=[one.output[0], node.output[0]],
    )


def onnx(model, path: str, opset: int = 17, tokenizer=None, overwrite: bool = False) -> str:
    """Writes `model` as an ONNX file taking `token_ids`, `segment_ids` and
    `padding_mask` (int32, dynamic batch and length); returns `path`.

    Tokenization stays outside: tensorflow-text's ops have no ONNX
    equivalent. A `TextClassifier` exports its classifier (outputs `logits`,
    `probabilities`, `label`); a backbone `sequence_output` and `pooled_output`.

    Args:
        model: a tfbert backbone or backbone model (built).
        path: str, ending in ".onnx". An existing file is kept unless
            `overwrite`; the file appears complete or not at all (written
            beside it and renamed).
        opset: int, default 17.
        tokenizer: optional; checked against the model's vocabulary size.
        overwrite: bool, default False.
    """
    import tf2onnx

    model, tokenizer, _ = prepare(model, tokenizer)
    if not path.endswith(".onnx"):
        raise ValueError(f"ONNX files end in .onnx; received {path!r}.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another path.")
    signature = [tf.TensorSpec((None, None), tf.int32, name=name) for name in TOKEN_INPUTS]

    @tf.function(input_signature=signature)
    def serve(token_ids, segment_ids, padding_mask):
        inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
        return model_outputs(model, inputs)

    with atomic_path(path, overwrite=overwrite) as staging:
        tf2onnx.convert.from_function(
            serve,
            input_signature=signature,
            opset=opset,
            output_path=staging,
            custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
        )
    return path


def run_onnx(path: str, inputs: dict) -> dict:
    """Outputs of the ONNX file at `path` under ONNX Runtime (CPU)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {name: np.asarray(inputs[name], np.int32) for name in TOKEN_INPUTS}
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))
