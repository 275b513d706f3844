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


def pin_tf_keras() -> None:
    """Resolves `tf.keras` to Keras 3 for the rest of the process.

    `import tensorflow_model_optimization` sets TF_USE_LEGACY_KERAS=1, and
    TensorFlow's lazy `tf.keras` reads that variable the first time it is
    touched: after tfmot, an unresolved `tf.keras` becomes Keras 2
    (tf_keras). Touching it here, when tfbert loads, fixes it to Keras 3,
    which tfbert's models and every `tf.keras` caller then share. A process
    that asked for Keras 2 itself (TF_USE_LEGACY_KERAS set before tfbert
    loads) is left alone.
    """
    if os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes"):
        return
    import tensorflow as tf

    tf.keras.Model  # noqa: B018  (resolves the lazy module)
