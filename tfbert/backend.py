"""Pins Keras to the TensorFlow backend before Keras is imported anywhere."""

import os
import sys


def require_tensorflow_backend() -> None:
    """Makes Keras load on the TensorFlow backend, or explains why it cannot.

    tfbert's text ops, distribution strategies and exporters are TensorFlow
    code, so Keras must run on TensorFlow. Call this before Keras is imported.
    """
    requested = os.environ.get("KERAS_BACKEND")
    if "keras" in sys.modules:
        import keras

        running = keras.backend.backend()
        if running != "tensorflow":
            raise ImportError(
                f"tfbert needs Keras on the TensorFlow backend, but Keras is "
                f"already running the '{running}' backend. Set "
                "KERAS_BACKEND=tensorflow before anything imports keras, or "
                "import tfbert first."
            )
        return
    if requested not in (None, "", "tensorflow"):
        raise ImportError(
            f"tfbert needs Keras on the TensorFlow backend, but "
            f"KERAS_BACKEND={requested!r}. Unset it or set "
            "KERAS_BACKEND=tensorflow."
        )
    os.environ["KERAS_BACKEND"] = "tensorflow"
