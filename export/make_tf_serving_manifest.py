"""Writes tfbert/export/manifests/tf-serving-ops.txt (package data read by
`tfbert.export.check_ops`): every op TF Serving can run with the
tensorflow-text it bundles.

TF Serving links TensorFlow's kernels and an older tensorflow-text
(2.12.1 in the releases this project targets: tensorflow/serving#2267). Run
this with a Python that has exactly those installed, e.g.

    python3.11 -m venv /tmp/tf212
    /tmp/tf212/bin/pip install tensorflow-text==2.12.1   # brings tensorflow 2.12
    /tmp/tf212/bin/python export/make_tf_serving_manifest.py

It asks TensorFlow's C API for every registered op after importing
tensorflow_text (which registers its ops), and writes one name per line.
"""

import os

import tensorflow as tf
import tensorflow_text
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session

buffer = pywrap_tf_session.TF_GetAllOpList()
ops = op_def_pb2.OpList()
ops.ParseFromString(pywrap_tf_session.TF_GetBuffer(buffer))
names = sorted({op.name for op in ops.op})
# Found from this script's place in the repository: the Python running it
# has TensorFlow 2.12, not tfbert.
repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
path = os.path.join(repository, "tfbert", "export", "manifests", "tf-serving-ops.txt")
with open(path, "w", encoding="utf-8") as f:
    f.write(
        f"# Ops registered by tensorflow {tf.__version__} + tensorflow-text "
        f"{tensorflow_text.__version__}, the text ops TF Serving bundles.\n"
        "# Written by export/make_tf_serving_manifest.py (see its docstring to rebuild).\n"
        "# tfbert.export.check_ops(saved_model_dir, 'tf-serving') fails on any other op.\n"
    )
    f.write("\n".join(names) + "\n")
print(f"{len(names)} ops -> {path}")
