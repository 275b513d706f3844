"""Which ops an exported model needs, checked against what a runtime provides.

Targets:
- "tf-serving": a SavedModel's ops against those of TensorFlow 2.12 +
  tensorflow-text 2.12.1, the text ops TF Serving bundles
  (manifests/tf-serving-ops.txt).
- "litert": a .tflite file's custom ops against those tensorflow-text's
  LiteRT registrar runs (manifests/litert-tftext-ops.txt).
- "onnx": a SavedModel's ops against those tf2onnx can convert at the opset.

The manifests ship in the package (`tfbert/export/manifests/`, package
data), one op name per line, each with a header saying how it was made; the
repository's `export/make_*_manifest.py` scripts rebuild them.
"""

import os
from importlib import resources

from tfbert.export.saved_model import read_saved_model, signature_io

TARGETS = ("tf-serving", "litert", "onnx")
MANIFESTS = {"tf-serving": "tf-serving-ops.txt", "litert": "litert-tftext-ops.txt"}
# Graph plumbing tf2onnx resolves itself (freezing, inlining), not op handlers.
ONNX_PLUMBING = {
    "Placeholder",
    "Const",
    "Identity",
    "IdentityN",
    "NoOp",
    "VarHandleOp",
    "ReadVariableOp",
    "StatefulPartitionedCall",
    "PartitionedCall",
    # Dropped with the checks it guards (serve_token_ids' id range): ONNX has
    # no assertions; tf2onnx converts the rest of the signature.
    "Assert",
}


def saved_model_ops(path: str, signatures=None) -> set[str]:
    """Op types the SavedModel at `path` needs: every op of its graphs and
    functions (None, what loading it takes), or only those reachable from
    the named signatures (what serving them takes)."""
    proto = read_saved_model(path)
    ops = set()
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        functions = {function.signature.name: function for function in graph.library.function}
        if signatures is None:
            ops.update(node.op for node in graph.node)
            for function in functions.values():
                ops.update(node.op for node in function.node_def)
        else:
            ops |= _reachable_ops(path, meta_graph, functions, signatures)
        ops -= set(functions)
    return ops


def _reachable_ops(path, meta_graph, functions, signatures) -> set[str]:
    nodes = {node.name: node for node in meta_graph.graph_def.node}
    pending = []
    for signature in signatures:
        if signature not in meta_graph.signature_def:
            raise ValueError(
                f"{path} has no signature {signature!r}; it has "
                f"{sorted(meta_graph.signature_def)}."
            )
        outputs = meta_graph.signature_def[signature].outputs.values()
        pending += [output.name.split(":")[0] for output in outputs]
    ops, seen, called = set(), set(), []
    while pending:
        name = pending.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        ops.add(nodes[name].op)
        pending += [source.lstrip("^").split(":")[0] for source in nodes[name].input]
        called += _called_functions(nodes[name])
    while called:
        name = called.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in functions[name].node_def:
            ops.add(node.op)
            called += _called_functions(node)
    return ops


def _called_functions(node) -> list[str]:
    names = []
    for value in node.attr.values():
        if value.func.name:
            names.append(value.func.name)
        names += [function.name for function in value.list.func]
    return names


def read_manifest(target: str) -> set[str]:
    """The op names in `target`'s manifest (package data of tfbert.export)."""
    if target not in MANIFESTS:
        raise ValueError(f"No op manifest for {target!r}; there are {sorted(MANIFESTS)}.")
    manifest = resources.files("tfbert.export").joinpath("manifests", MANIFESTS[target])
    if not manifest.is_file():
        raise FileNotFoundError(
            f"The op manifest {manifest} is missing: this tfbert installation lacks its "
            "package data. Reinstall tfbert (pip install --force-reinstall tfbert), or "
            "rebuild it with the repository's export/make_*_manifest.py scripts."
        )
    lines = manifest.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def onnx_convertible_ops(opset: int = 17) -> set[str]:
    """TensorFlow op types tf2onnx has a handler for at `opset` (tfbert's
    Erfc handler included)."""
    import tf2onnx.tfonnx  # noqa: F401  (registers every handler)
    from tf2onnx.handler import tf_op

    # tfbert.export.onnx passes its own Erfc handler to tf2onnx.
    return set(tf_op.create_mapping(opset, None)) | ONNX_PLUMBING | {"Erfc"}


def check_ops(artifact: str, target: str, signature: str | None = None, opset: int = 17):
    """Raises when `artifact` needs an op that `target` cannot run, naming
    the ops; otherwise returns what it needs.

    Args:
        artifact: a SavedModel folder ("tf-serving", "onnx") or a .tflite
            file ("litert").
        target: "tf-serving", "litert" or "onnx".
        signature: for SavedModels, check only the ops this signature
            reaches (e.g. "serve_token_ids"). None checks every op for
            "tf-serving" (loading runs them all) and every signature's ops
            for "onnx".
        opset: for "onnx", the ONNX opset.

    Returns:
        "tf-serving" and "onnx": the set of ops the SavedModel needs.
        "litert": {custom op: "tensorflow-text"} for every op the app must
        register beyond LiteRT's builtins (empty for token-id models).
    """
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; use one of {list(TARGETS)}.")
    if target == "litert":
        from tfbert.export.litert import custom_ops

        if not (artifact.endswith(".tflite") and os.path.isfile(artifact)):
            raise ValueError(f"The 'litert' target checks a .tflite file; received {artifact!r}.")
        with open(artifact, "rb") as f:
            needed = custom_ops(f.read())
        missing = sorted(needed - read_manifest(target))
        if missing:
            raise ValueError(
                f"{artifact} needs {len(missing)} custom op(s) that neither LiteRT nor "
                f"tensorflow-text's registrar provides: {missing}. Keep those ops out "
                "of the model (e.g. tokenize in the app: include_tokenizer=False)."
            )
        return {op: "tensorflow-text" for op in sorted(needed)}

    if target == "onnx":
        signatures = [signature] if signature else sorted(signature_io(artifact))
        signatures = [name for name in signatures if not name.startswith("__")]
    else:
        signatures = [signature] if signature else None
    needed = saved_model_ops(artifact, signatures)
    available = onnx_convertible_ops(opset) if target == "onnx" else read_manifest(target)
    missing = sorted(needed - available)
    if missing and target == "onnx":
        raise ValueError(
            f"{artifact} needs {len(missing)} op(s) that tf2onnx cannot convert at opset "
            f"{opset}: {missing}. String and tokenizer ops have no ONNX form: export "
            "token ids in (tfbert.export.onnx; signature='serve_token_ids')."
        )
    if missing:
        raise ValueError(
            f"{artifact} needs {len(missing)} op(s) that {target} does not register: "
            f"{missing}. They come from a newer TensorFlow or tensorflow-text than "
            f"{target} bundles; export without them (e.g. tokenizer outside the "
            "model: serve_token_ids) or use a runtime built with them."
        )
    return needed
