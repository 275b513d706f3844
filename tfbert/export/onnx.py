"""ONNX export (token ids in) through tf2onnx, checked with ONNX Runtime."""

import contextlib
import os
import tempfile

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


# ONNX Runtime's post-training quantizations `onnx()` offers.
ONNX_QUANTIZATIONS = (None, "dynamic_int8")
# Where `onnx()` records the quantization, read back by `verify_onnx`.
QUANTIZATION_KEY = "tfbert_quantization"


def onnx(
    model,
    path: str,
    opset: int = 17,
    tokenizer=None,
    overwrite: bool = False,
    quantization: str | None = None,
) -> str:
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
        quantization: None (float32) or "dynamic_int8": ONNX Runtime's
            `quantize_dynamic`, int8 weights for MatMul/Gemm (per output
            channel) with activations quantized at run time, so no
            calibration data is needed. Its outputs differ from the Keras
            model's by design: `verify_onnx` checks its labels instead.
    """
    if quantization not in ONNX_QUANTIZATIONS:
        raise ValueError(
            f"Unknown quantization {quantization!r} for ONNX; use one of {ONNX_QUANTIZATIONS}."
        )
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
        with tempfile.TemporaryDirectory() as scratch:
            converted = staging if quantization is None else os.path.join(scratch, "f32.onnx")
            _convert(serve, signature, opset, converted)
            if quantization == "dynamic_int8":
                _quantize_dynamic(converted, staging)
    return path


@contextlib.contextmanager
def _node_protos_written_once():
    """While tf2onnx's optimizer passes run, they leave each node's protobuf
    alone; `make_model` then writes every node once, after the last pass.

    tf2onnx (1.17) rewrites every node's protobuf after each of its ~50
    passes, and that copies each weight tensor again: for MiniLM this was
    most of the conversion. The passes themselves read tf2onnx's own node
    structure, not the protobufs.
    """
    from tf2onnx import optimizer
    from tf2onnx.graph import Graph

    optimize_graph, update_proto = optimizer.optimize_graph, Graph.update_proto

    def optimize_then_write(*args, **kwargs):
        Graph.update_proto = lambda self, external_tensor_storage=None: None
        try:
            return optimize_graph(*args, **kwargs)
        finally:
            Graph.update_proto = update_proto

    optimizer.optimize_graph = optimize_then_write
    try:
        yield
    finally:
        optimizer.optimize_graph = optimize_graph


def _convert(serve, signature, opset: int, path: str) -> None:
    """tf2onnx's conversion of `serve`, written to `path`.

    tf2onnx deep-copies the whole graph, weights included, before each of
    its ~50 optimizer passes so that a failing pass can be skipped, and
    rewrites every node's protobuf after each. The first try runs the
    passes in place and writes the protobufs once (MiniLM: 12 s instead of
    16-47 s); only a conversion that raises is redone tf2onnx's own way.
    (tf2onnx 1.17 turns the copies off whenever TF2ONNX_CATCH_ERRORS is
    set, whatever its value, and on where unset.) Where the user set the
    variable, tf2onnx runs as they chose.
    """
    import tf2onnx

    def convert():
        tf2onnx.convert.from_function(
            serve,
            input_signature=signature,
            opset=opset,
            output_path=path,
            custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
        )

    key = "TF2ONNX_CATCH_ERRORS"
    if key in os.environ:  # the user's own choice
        convert()
        return
    os.environ[key] = "FALSE"
    try:
        with _node_protos_written_once():
            convert()
    except Exception:  # an optimizer pass failed: redo it skipping such passes
        del os.environ[key]
        convert()
    finally:
        os.environ.pop(key, None)


def _fold_weight_shapes(model) -> None:
    """Folds `Shape(weight)` and `Reshape(weight, constant)` into constants.

    tf2onnx reads each attention kernel's shape at run time and reshapes it
    there; those nodes would keep a float32 copy of every kernel beside its
    int8 one, and hide the Gemm's weight from the quantizer.
    """
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    folded, nodes = [], []
    for node in model.graph.node:
        source = values.get(node.input[0]) if node.input else None
        if node.op_type == "Shape" and source is not None and not node.attribute:
            result = np.array(source.shape, np.int64)
        elif node.op_type == "Reshape" and source is not None and node.input[1] in values:
            shape = [
                source.shape[i] if size == 0 else size
                for i, size in enumerate(values[node.input[1]].tolist())
            ]
            result = source.reshape(shape)
        else:
            nodes.append(node)
            continue
        values[node.output[0]] = result
        folded.append(numpy_helper.from_array(result, node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(folded)
    _drop_unused_initializers(model)


def _drop_unused_initializers(model) -> None:
    used = {name for node in model.graph.node for name in node.input}
    used |= {output.name for output in model.graph.output}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _gemm_as_matmul(model) -> None:
    """Rewrites each `Gemm` (tf2onnx's form of a 2-D dense layer) as MatMul + Add.

    ONNX Runtime's dynamic quantization has an int8 kernel for MatMul, none
    for Gemm: left as Gemm, the attention projections would stay float32.
    """
    from onnx import helper, numpy_helper

    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm":
            nodes.append(node)
            continue
        a, b, *c = node.input
        c = [name for name in c if name]
        # beta scales C, so it matters only when there is a C.
        plain = attributes.get("alpha", 1.0) == 1.0 and (
            not c or attributes.get("beta", 1.0) == 1.0
        )
        if not plain or attributes.get("transA", 0):
            nodes.append(node)
            continue
        if attributes.get("transB", 0):
            if b not in weights:
                nodes.append(node)
                continue
            # A new initializer: the original may feed other nodes as it is.
            name = f"{b}_transposed"
            if name not in weights:
                transposed = numpy_helper.to_array(weights[b]).T.copy()
                weights[name] = numpy_helper.from_array(transposed, name)
                model.graph.initializer.append(weights[name])
            b = name
        product = node.output[0] + "_matmul" if c else node.output[0]
        node_name = node.name or node.output[0]  # names must be unique, may be empty
        nodes.append(helper.make_node("MatMul", [a, b], [product], name=f"{node_name}_matmul"))
        if c:
            nodes.append(
                helper.make_node("Add", [product, c[0]], [node.output[0]], name=node.name)
            )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused_initializers(model)


def _quantize_dynamic(source: str, target: str) -> None:
    import onnx as onnx_format
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx_format.load(source)
    _fold_weight_shapes(model)
    onnx_format.save(model, source)
    # ONNX Runtime's basic level folds the remaining constant subgraphs (the
    # kernels' shape arithmetic), so that every weight reaches its MatMul as
    # an initializer.
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = source
    onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    model = onnx_format.load(source)
    _gemm_as_matmul(model)
    onnx_format.save(model, source)
    # Per-channel int8 weights keep a fine-tuned MiniLM's labels (per-tensor
    # scales lose a few points on its wide-ranged FFN kernels).
    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
    quantized = onnx_format.load(target)
    entry = quantized.metadata_props.add()
    entry.key, entry.value = QUANTIZATION_KEY, "dynamic_int8"
    onnx_format.save(quantized, target)


def onnx_quantization(path: str) -> str:
    """ "float32", or the quantization `onnx()` recorded in the file."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.get_modelmeta().custom_metadata_map.get(QUANTIZATION_KEY, "float32")


def run_onnx(path: str, inputs: dict) -> dict:
    """Outputs of the ONNX file at `path` under ONNX Runtime (CPU)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {name: np.asarray(inputs[name], np.int32) for name in TOKEN_INPUTS}
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))
