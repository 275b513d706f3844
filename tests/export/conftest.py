import pytest

from tfbert.export import export_artifacts
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


@pytest.fixture(scope="session")
def tiny(vocabulary_file):
    """bert_tiny on MiniLM's real vocabulary with a two-class head: cheap to
    export to every runtime."""
    import keras

    keras.utils.set_random_seed(3)
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=32)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    return TextClassifier(tokenizer, BertClassifier(backbone, 2), ["negative", "positive"])


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory, tiny, rotten_tomatoes):
    """`tiny` exported to SavedModel, ONNX and LiteRT by `export_artifacts`,
    verified on 16 real sentences: (output folder, reports, sentences)."""
    folder = tmp_path_factory.mktemp("exports")
    sentences = [text for text, _ in rotten_tomatoes[100:116]]
    return folder, export_artifacts(tiny, str(folder), sentences, latency_repeats=3), sentences
