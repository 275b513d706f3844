"""tfbert: multi-head attention, the Transformer and BERT as Keras 3 layers."""

import importlib
import pkgutil

from tfbert.backend import pin_tf_keras, require_tensorflow_backend

require_tensorflow_backend()
pin_tf_keras()

# training registers its schedules and optimizers, so that every saved
# tfbert model loads after `import tfbert`.
from tfbert import layers, models, text, training  # noqa: E402
from tfbert.models import BertBackbone, BertPretrainer  # noqa: E402
from tfbert.text import BertTokenizer  # noqa: E402

__version__ = "0.1.0"

# The other subpackages (export, serving, ...) load on first use, PEP 562:
# importing them pulls in tf2onnx, ONNX Runtime, LiteRT and gRPC.
_LAZY_SUBPACKAGES = tuple(
    sorted(
        module.name
        for module in pkgutil.iter_modules(__path__)
        if module.ispkg and not module.name.startswith("_") and module.name not in globals()
    )
)

__all__ = [
    "BertBackbone",
    "BertPretrainer",
    "BertTokenizer",
    "layers",
    "models",
    "text",
    "training",
    *_LAZY_SUBPACKAGES,
]


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"tfbert.{name}")  # also sets tfbert.<name>
    raise AttributeError(f"module 'tfbert' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY_SUBPACKAGES})
