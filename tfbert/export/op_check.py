"""Which ops an exported model needs, checked against what a runtime provides.

Manifests live in the repository's top-level `export/` folder, one op name
per line, each with a header saying how it was made.
"""

import os

from tensorflow.core.protobuf import saved_model_pb2

TARGETS = ("tf-serving",)
MANIFEST_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "export")
MANIFESTS = {"tf-serving": "tf-serving-ops.txt"}


def saved_model_ops(path: str) -> set[str]:
    """Every op type in the graphs and functions of the SavedModel at `path`."""
    proto_path = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(proto_path):
        raise ValueError(f"{path} is not a SavedModel folder (no saved_model.pb).")
    proto = saved_model_pb2.SavedModel()
    with open(proto_path, "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
    # Calls of the graph's own functions are not ops a runtime must register.
    functions = {
        function.signature.name
        for meta_graph in proto.meta_graphs
        for function in meta_graph.graph_def.library.function
    }
    return ops - functions


def read_manifest(target: str) -> set[str]:
    if target not in MANIFESTS:
        raise ValueError(f"Unknown target {target!r}; use one of {list(TARGETS)}.")
    path = os.path.join(MANIFEST_DIR, MANIFESTS[target])
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"The op manifest {path} is missing; it ships in the tfbert repository's "
            "export/ folder (see export/make_tf_serving_manifest.py)."
        )
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip() and not line.startswith("#")}


def check_ops(artifact: str, target: str) -> set[str]:
    """Raises when `artifact` needs an op that `target` does not register;
    returns the ops it needs.

    "tf-serving": the SavedModel's ops against those of TensorFlow 2.12 +
    tensorflow-text 2.12.1, the text ops bundled with TF Serving (a newer
    text op would fail to load there).
    """
    available = read_manifest(target)
    needed = saved_model_ops(artifact)
    missing = sorted(needed - available)
    if missing:
        raise ValueError(
            f"{artifact} needs {len(missing)} op(s) that {target} does not register: "
            f"{missing}. They come from a newer TensorFlow or tensorflow-text than "
            f"{target} bundles; export without them (e.g. tokenizer outside the "
            "model: serve_token_ids) or use a runtime built with them."
        )
    return needed
