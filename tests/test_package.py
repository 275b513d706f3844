"""`import tfbert` reaches every public subpackage: the light ones at once,
the heavy ones (export, serving) on first use."""

import os
import subprocess
import sys

_CHECK = """
import sys
import tfbert
assert "tfbert.export" not in sys.modules and "tfbert.serving" not in sys.modules, sorted(
    name for name in sys.modules if name.startswith("tfbert.")
)
assert {"export", "serving", "layers", "training"} <= set(dir(tfbert))
assert {"export", "serving"} <= set(tfbert.__all__)
tfbert.export.saved_model, tfbert.export.verify_onnx, tfbert.serving.Client
assert "tfbert.export" in sys.modules and "tfbert.serving" in sys.modules
try:
    tfbert.exports
except AttributeError as error:
    print(error)
"""


def test_subpackages_load_lazily_on_first_use(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", _CHECK],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "module 'tfbert' has no attribute 'exports'"
