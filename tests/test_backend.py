import os
import subprocess
import sys


def _run(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        timeout=300,
    )


def test_importing_tfbert_selects_the_tensorflow_backend():
    environment = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", "import tfbert, keras; print(keras.backend.backend())"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tensorflow"


def test_another_backend_fails_clearly():
    result = _run("import tfbert", KERAS_BACKEND="jax")
    assert result.returncode != 0
    assert "tfbert needs Keras on the TensorFlow backend" in result.stderr
    assert "KERAS_BACKEND='jax'" in result.stderr
