import pytest

from tfbert.models import BertBackbone, BertClassifier, TextClassifier
from tfbert.text import BertTokenizer, minilm_checkpoint_dir


@pytest.fixture(scope="session")
def sentiment(vocabulary_file):
    """all-MiniLM-L6-v2 (real weights) with a two-class head, raw text in."""
    backbone = BertBackbone.from_checkpoint(minilm_checkpoint_dir())
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=64)
    classifier = BertClassifier(backbone, num_classes=2, pooling="mean")
    return TextClassifier(tokenizer, classifier, label_names=["negative", "positive"])


@pytest.fixture(scope="session")
def texts(rotten_tomatoes):
    return [text for text, _ in rotten_tomatoes[:6]]
