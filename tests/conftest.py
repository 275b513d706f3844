import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `make test` runs TEST_WORKERS (2) pytest-xdist workers. TensorFlow would
# give each worker's process (and the processes tests start, which inherit
# the environment) an intra-op pool as wide as the machine, so two workers on
# two cores ran four compute threads that preempted each other; a pool of
# each worker's share of the cores measured 6-12% faster. The inter-op pool
# keeps its default: multi-worker clusters can hang with too few inter-op
# threads. Set before TensorFlow starts; a value in the environment wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, (_CORES or 1) // _WORKERS)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend first)
from tfbert.text import (  # noqa: E402
    BertTokenizer,
    minilm_checkpoint_dir,
    minilm_vocabulary_file,
    movie_reviews,
)

# A session fixture that costs tens of seconds is built once per pytest-xdist
# worker: its users carry `pytest.mark.xdist_group("<fixture name>")`, and
# `make test` (--dist loadgroup) runs each group on one worker. A module whose
# module-scoped fixtures are expensive is one group (`pytestmark`) for the
# same reason: split over two workers, each would build them.


def pytest_configure(config):
    """Refuses `--dist loadgroup` under a pytest that makes it group nothing.

    pytest-xdist (3.8) groups a test by appending "@<group>" to its node id,
    which pytest 9 no longer reads: every worker then silently builds every
    group's fixtures (a minute each for the fine-tuned MiniLM).
    """
    if (
        getattr(config.option, "dist", None) == "loadgroup"
        and int(pytest.__version__.split(".")[0]) >= 9
    ):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} breaks pytest-xdist's --dist loadgroup (tests of one "
            "xdist_group run on several workers); install the test versions pyproject.toml "
            "pins: pip install -e '.[test]'."
        )


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


@pytest.fixture(scope="session")
def fine_tuned_minilm(vocabulary_file, rotten_tomatoes):
    """all-MiniLM-L6-v2 with a mean-pooling two-class head, fine-tuned one
    epoch on 1,024 Rotten Tomatoes sentences of 32 tokens (BERT's AdamW,
    warmup then linear decay), and 1,000 other sentences held out:
    `(classifier, tokenizer, held_out_x, held_out_y, train_x, held_out_texts)`.
    Its users carry `pytest.mark.xdist_group("fine_tuned_minilm")`."""
    from tfbert.models import BertBackbone, BertClassifier
    from tfbert.training import WarmupPolynomialDecay, create_adamw

    keras.utils.set_random_seed(0)
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=32)
    order = np.random.default_rng(0).permutation(len(rotten_tomatoes))
    train, held_out = order[:1024], order[1024:2024]

    def arrays(indices):
        x = tokenizer([rotten_tomatoes[i][0] for i in indices])
        labels = np.array([rotten_tomatoes[i][1] for i in indices])
        return {k: v.numpy() for k, v in x.items()}, labels

    (x, y), (test_x, test_y) = arrays(train), arrays(held_out)
    backbone = BertBackbone.from_checkpoint(minilm_checkpoint_dir())
    classifier = BertClassifier(backbone, 2, pooling="mean")
    steps = len(y) // 32
    classifier.compile(optimizer=create_adamw(WarmupPolynomialDecay(1e-4, steps // 10, steps)))
    classifier.fit(x, y, batch_size=32, epochs=1, verbose=0)
    held_out_texts = [rotten_tomatoes[i][0] for i in held_out]
    return classifier, tokenizer, test_x, test_y, x, held_out_texts


@pytest.fixture(scope="session")
def minilm_reference_labels(fine_tuned_minilm):
    """The Keras labels of `fine_tuned_minilm` on its 1,000 held-out sentences:
    what quantized exports are compared with."""
    from tfbert.export import model_outputs

    classifier, _, test_x = fine_tuned_minilm[:3]
    return model_outputs(classifier, test_x)["label"].numpy()


@pytest.fixture(scope="session")
def german_english():
    """The Ding dictionary's (German, English) sentence pairs: (train, test).

    They come from Debian's `trans-de-en`; without it the test is skipped,
    except under CI (CI=true), where the package is always installed and a
    skip would hide a broken install."""
    from tfbert.text import german_english_pairs
    from tfbert.text.corpora import DING_DICTIONARY_FILE

    if not os.path.isfile(DING_DICTIONARY_FILE):
        message = (
            f"needs Debian's 'trans-de-en' package ({DING_DICTIONARY_FILE}): "
            "apt-get install trans-de-en"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"Under CI the German-English pairs must be installed: {message}")
        pytest.skip(message)
    return german_english_pairs("train"), german_english_pairs("test")
