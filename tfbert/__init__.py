"""tfbert: multi-head attention, the Transformer and BERT as Keras 3 layers."""

from tfbert.backend import require_tensorflow_backend

require_tensorflow_backend()

# training registers its schedules and optimizers, so that every saved
# tfbert model loads after `import tfbert`.
from tfbert import layers, models, text, training  # noqa: E402
from tfbert.models import BertBackbone, BertPretrainer  # noqa: E402
from tfbert.text import BertTokenizer  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BertBackbone",
    "BertPretrainer",
    "BertTokenizer",
    "layers",
    "models",
    "text",
    "training",
]
