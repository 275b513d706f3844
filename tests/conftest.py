import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend first)
from tfbert.text import BertTokenizer, minilm_vocabulary_file, movie_reviews  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Every test starts from float32, a fixed seed and a fresh Keras session."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def vocabulary_file():
    return minilm_vocabulary_file()


@pytest.fixture(scope="session")
def rotten_tomatoes():
    """Real Rotten Tomatoes sentences (text, label)."""
    return movie_reviews("rotten_tomatoes")


@pytest.fixture(scope="session")
def real_sentences(rotten_tomatoes):
    """Eight real sentences of different lengths."""
    return [text for text, _ in rotten_tomatoes[:8]]


@pytest.fixture(scope="session")
def tokenizer(vocabulary_file):
    return BertTokenizer(vocabulary_file, sequence_length=32)


@pytest.fixture(scope="session")
def real_inputs(tokenizer, real_sentences):
    """BERT inputs (numpy, int32) of 8 real sentences padded to 32 tokens."""
    return {k: np.asarray(v) for k, v in tokenizer(real_sentences).items()}


@pytest.fixture(scope="session")
def imdb_reviews():
    """Real IMDB reviews (text, label)."""
    return movie_reviews("imdb")
