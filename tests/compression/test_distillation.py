"""BERT distillation losses, views, errors, student initialisation and saving.

Teacher and student are tiny tfbert models on the MiniLM vocabulary, run on
real Rotten Tomatoes sentences padded to 32 tokens (padding included, so
every masked mean is exercised). Each loss is recomputed in NumPy (float64)
from the same model outputs.
"""

import zipfile

import h5py
import keras
import numpy as np
import pytest

from tfbert.compression.attention_distillation import AttentionDistillation
from tfbert.compression.bert_distiller import BertDistiller
from tfbert.compression.distillation_features import distillation_view, uniform_layer_mapping
from tfbert.compression.embedding_distillation import EmbeddingDistillation
from tfbert.compression.hidden_state_distillation import HiddenStateDistillation
from tfbert.compression.student import student_from_teacher
from tfbert.models import BertBackbone, BertClassifier

# One worker builds this module's module-scoped fixtures (see tests/conftest.py).
pytestmark = pytest.mark.xdist_group("test_distillation")

VOCABULARY = 30522  # the MiniLM vocabulary of the `tokenizer` fixture
RTOL = 1e-5


def backbone(num_layers, hidden_dim, num_heads=2, vocabulary_size=VOCABULARY):
    model = BertBackbone(
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        2 * hidden_dim,
        max_sequence_length=32,
        dropout=0.0,
    )
    # BERT's 0.02-stddev init attends almost uniformly (the KL between two
    # random models is ~1e-5); larger query/key kernels give peaked maps.
    for block in model.transformer_layers:
        for dense in (block.self_attention.query_dense, block.self_attention.key_dense):
            dense.kernel.assign(dense.kernel * 10.0)
    return model


def classifier(num_layers, hidden_dim, num_heads=2, pooling="cls", **kwargs):
    model = BertClassifier(
        backbone(num_layers, hidden_dim, num_heads, **kwargs), 2, dropout=0.0, pooling=pooling
    )
    # Logits of a few units, so that two random models' KL is far from 0.
    model.logits_dense.kernel.assign(model.logits_dense.kernel * 50.0)
    return model


@pytest.fixture
def models():
    """A 4-block, 32-wide teacher and a 2-block, 16-wide student."""
    return classifier(4, 32), classifier(2, 16)


@pytest.fixture(scope="module")
def labels(rotten_tomatoes):
    return np.array([label for _, label in rotten_tomatoes[:8]])


def numpy_features(model, x):
    out = distillation_view(model)(x)
    return keras.tree.map_structure(lambda t: np.asarray(t, "float64"), out)


def numpy_masked_mean(values, mask):
    """Mean of (B, T) values over the real tokens."""
    return float((values * mask).sum() / mask.sum())


def numpy_projected_mse(teacher, student, projection, mask):
    if projection is not None:
        kernel, bias = (np.asarray(w, "float64") for w in projection.get_weights())
        student = student @ kernel + bias
    return numpy_masked_mean(((student - teacher) ** 2).mean(-1), mask)


def numpy_attention_kl(teacher, student, mask, head_reduction=None, epsilon=1e-12):
    if head_reduction == "mean":
        teacher, student = teacher.mean(1, keepdims=True), student.mean(1, keepdims=True)
    log = lambda p: np.log(np.maximum(p, epsilon))  # noqa: E731
    kl = (teacher * (log(teacher) - log(student))).sum(-1)  # (B, N, T)
    return numpy_masked_mean(kl.mean(1), mask)


def numpy_logits_kl(teacher, student, temperature):
    def log_softmax(z):
        z = z / temperature
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    p = np.exp(log_softmax(teacher))
    return float((p * (log_softmax(teacher) - log_softmax(student))).sum(-1).mean()) * (
        temperature**2
    )


def test_uniform_mapping_is_tinybert_g_of_m():
    assert uniform_layer_mapping(2, 6) == [(0, 2), (1, 5)]
    assert uniform_layer_mapping(3, 12) == [(0, 3), (1, 7), (2, 11)]
    assert uniform_layer_mapping(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_view_shares_weights_and_gives_the_models_logits(real_inputs, pooling):
    model = classifier(2, 16, pooling=pooling)
    view = distillation_view(model)
    out = view(real_inputs)
    np.testing.assert_allclose(out["logits"], model(real_inputs), atol=1e-6)
    assert len(out["hidden_states"]) == 3 and len(out["attention_scores"]) == 2
    assert tuple(out["attention_scores"][0].shape) == (8, 2, 32, 32)
    # Its backbone output equals the backbone's own; its weights are the model's.
    np.testing.assert_allclose(
        out["hidden_states"][-1], model.backbone(real_inputs)["sequence_output"], atol=1e-6
    )
    assert {id(w) for w in view.weights} == {id(w) for w in model.weights}


def test_hidden_state_loss_equals_numpy(models, real_inputs):
    teacher, student = models
    loss = HiddenStateDistillation()  # uniform: student 0 <- teacher 1, 1 <- 3
    distiller = BertDistiller(teacher, student, loss, student_loss_weight=0.0)
    assert loss.pairs == [(0, 1), (1, 3)]
    assert tuple(loss.projection.kernel.shape) == (16, 32)
    assert distiller.projections == [loss.projection]
    t, s = numpy_features(teacher, real_inputs), numpy_features(student, real_inputs)
    mask = real_inputs["padding_mask"].astype("float64")
    assert 0 < mask.mean() < 1  # real padding
    expected = np.mean(
        [
            numpy_projected_mse(
                t["hidden_states"][tb + 1], s["hidden_states"][sb + 1], loss.projection, mask
            )
            for sb, tb in loss.pairs
        ]
    )
    actual = loss.compute_loss(
        distillation_view(teacher)(real_inputs),
        distillation_view(student)(real_inputs),
        padding_mask=real_inputs["padding_mask"],
    )
    np.testing.assert_allclose(float(actual), expected, rtol=RTOL)


def test_hidden_state_loss_of_equal_widths_has_no_projection(real_inputs):
    teacher, student = classifier(2, 16), classifier(1, 16)
    loss = HiddenStateDistillation(layer_mapping=[(0, 0)])
    BertDistiller(teacher, student, loss, student_loss_weight=0.0)
    assert loss.projection is None
    t, s = numpy_features(teacher, real_inputs), numpy_features(student, real_inputs)
    mask = real_inputs["padding_mask"].astype("float64")
    expected = numpy_projected_mse(t["hidden_states"][1], s["hidden_states"][1], None, mask)
    actual = loss.compute_loss(
        distillation_view(teacher)(real_inputs),
        distillation_view(student)(real_inputs),
        padding_mask=real_inputs["padding_mask"],
    )
    np.testing.assert_allclose(float(actual), expected, rtol=RTOL)


def test_embedding_loss_equals_numpy(models, real_inputs):
    teacher, student = models
    loss = EmbeddingDistillation()
    BertDistiller(teacher, student, loss, student_loss_weight=0.0)
    assert tuple(loss.projection.kernel.shape) == (16, 32)
    t, s = numpy_features(teacher, real_inputs), numpy_features(student, real_inputs)
    mask = real_inputs["padding_mask"].astype("float64")
    expected = numpy_projected_mse(
        t["hidden_states"][0], s["hidden_states"][0], loss.projection, mask
    )
    actual = loss.compute_loss(
        distillation_view(teacher)(real_inputs),
        distillation_view(student)(real_inputs),
        padding_mask=real_inputs["padding_mask"],
    )
    np.testing.assert_allclose(float(actual), expected, rtol=RTOL)


@pytest.mark.parametrize(
    "student_heads, head_reduction, mapping",
    [(2, None, None), (1, "mean", {1: 3}), (4, "mean", [(0, 0), (0, 2)])],
)
def test_attention_kl_equals_numpy(real_inputs, student_heads, head_reduction, mapping):
    teacher, student = classifier(4, 32), classifier(2, 16, num_heads=student_heads)
    loss = AttentionDistillation(layer_mapping=mapping, head_reduction=head_reduction)
    BertDistiller(teacher, student, loss, student_loss_weight=0.0)
    t, s = numpy_features(teacher, real_inputs), numpy_features(student, real_inputs)
    mask = real_inputs["padding_mask"].astype("float64")
    expected = np.mean(
        [
            numpy_attention_kl(
                t["attention_scores"][tb], s["attention_scores"][sb], mask, head_reduction
            )
            for sb, tb in loss.pairs
        ]
    )
    actual = loss.compute_loss(
        distillation_view(teacher)(real_inputs),
        distillation_view(student)(real_inputs),
        padding_mask=real_inputs["padding_mask"],
    )
    assert expected > 1e-3  # random models attend differently
    np.testing.assert_allclose(float(actual), expected, rtol=RTOL)
    # A model against itself: zero.
    itself = AttentionDistillation(layer_mapping={0: 0, 1: 1}, head_reduction=head_reduction)
    itself.build(student, student)
    view = distillation_view(student)
    same = itself.compute_loss(view(real_inputs), view(real_inputs), padding_mask=mask)
    assert abs(float(same)) < 1e-6


def test_total_loss_is_keras_weighting_of_all_losses(models, real_inputs, labels):
    teacher, student = models
    losses = [
        keras.distillation.LogitsDistillation(temperature=2.0, loss=keras.losses.KLDivergence()),
        HiddenStateDistillation(),
        AttentionDistillation(),
        EmbeddingDistillation(),
    ]
    weights = [1.0, 0.5, 2.0, 0.25]
    distiller = BertDistiller(teacher, student, losses, weights, student_loss_weight=0.3)
    distiller.compile(optimizer="adam")
    total = float(distiller.compute_loss(real_inputs, labels, training=False))

    t, s = numpy_features(teacher, real_inputs), numpy_features(student, real_inputs)
    mask = real_inputs["padding_mask"].astype("float64")
    hidden, attention, embedding = losses[1:]
    values = [
        numpy_logits_kl(t["logits"], s["logits"], 2.0),
        np.mean(
            [
                numpy_projected_mse(
                    t["hidden_states"][tb + 1], s["hidden_states"][sb + 1], hidden.projection, mask
                )
                for sb, tb in hidden.pairs
            ]
        ),
        np.mean(
            [
                numpy_attention_kl(t["attention_scores"][tb], s["attention_scores"][sb], mask)
                for sb, tb in attention.pairs
            ]
        ),
        numpy_projected_mse(
            t["hidden_states"][0], s["hidden_states"][0], embedding.projection, mask
        ),
    ]
    logits = s["logits"] - s["logits"].max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    student_loss = -log_probs[np.arange(len(labels)), labels].mean()
    expected = 0.3 * student_loss + 0.7 * np.dot(weights, values)
    np.testing.assert_allclose(total, expected, rtol=RTOL)
    np.testing.assert_allclose(
        float(distiller.distillation_loss_tracker.result()), np.dot(weights, values), rtol=RTOL
    )


def test_keras_logits_distillation_trains_tfbert_classifiers(models, real_inputs, labels):
    """Keras' own Distiller and LogitsDistillation on BertClassifier logits."""
    teacher, student = models
    loss = keras.distillation.LogitsDistillation(temperature=3.0, loss=keras.losses.KLDivergence())
    distiller = keras.distillation.Distiller(teacher, student, loss, student_loss_weight=0.0)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy"
    )
    value = float(distiller.compute_loss(real_inputs, labels, student(real_inputs)))
    expected = numpy_logits_kl(
        np.asarray(teacher(real_inputs), "float64"),
        np.asarray(student(real_inputs), "float64"),
        3.0,
    )
    np.testing.assert_allclose(value, expected, rtol=RTOL)
    history = distiller.fit(real_inputs, labels, batch_size=4, epochs=2, verbose=0)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]


def test_keras_default_kl_string_is_replaced_by_the_probability_kl(models, real_inputs):
    """LogitsDistillation()'s "kl_divergence" would compare clipped logits in Keras 3.15."""
    teacher, student = models
    t, s = np.asarray(teacher(real_inputs), "float64"), np.asarray(student(real_inputs), "float64")
    bare = keras.distillation.LogitsDistillation(temperature=2.0)
    wrong = float(bare.compute_loss(t.astype("float32"), s.astype("float32")))
    with pytest.warns(UserWarning, match="clipped logits"):
        distiller = BertDistiller(teacher, student, bare, student_loss_weight=0.0)
    (used,) = distiller.distillation_losses
    right = float(used.compute_loss(t.astype("float32"), s.astype("float32")))
    np.testing.assert_allclose(right, numpy_logits_kl(t, s, 2.0), rtol=RTOL)
    assert wrong > 5 * right  # the Keras default is far off


@pytest.fixture(scope="module")
def distilled(real_inputs, labels, tmp_path_factory):
    """A student distilled (3 epochs, callbacks, evaluate before and after)
    with logits, hidden-state, attention and embedding losses."""
    keras.utils.set_random_seed(1234)
    teacher, student = classifier(4, 32), classifier(2, 16)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    losses = [
        keras.distillation.LogitsDistillation(2.0, loss=keras.losses.KLDivergence()),
        HiddenStateDistillation(),
        AttentionDistillation(),
        EmbeddingDistillation(),
    ]
    distiller = BertDistiller(teacher, student, losses, student_loss_weight=0.5)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    before = distiller.evaluate(real_inputs, labels, batch_size=8, verbose=0, return_dict=True)
    seen = []
    log = tmp_path_factory.mktemp("distill") / "log.csv"
    callbacks = [
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs))),
        keras.callbacks.CSVLogger(str(log)),
    ]
    history = distiller.fit(
        real_inputs, labels, batch_size=4, epochs=3, verbose=0, callbacks=callbacks
    )
    after = distiller.evaluate(real_inputs, labels, batch_size=8, verbose=0, return_dict=True)
    return {
        "teacher": teacher,
        "student": student,
        "distiller": distiller,
        "teacher_weights": teacher_weights,
        "before": before,
        "after": after,
        "seen": seen,
        "log": log,
        "history": history.history,
        "labels": labels,
    }


def test_fit_evaluate_callbacks_and_predict(distilled, real_inputs):
    before, after, seen = distilled["before"], distilled["after"], distilled["seen"]
    for logs in (before, after, *seen):
        assert {"loss", "student_loss", "distillation_loss", "accuracy"} <= set(logs)
    assert len(seen) == 3 and distilled["log"].read_text().count("\n") == 4
    assert after["distillation_loss"] < 0.8 * before["distillation_loss"]
    assert distilled["history"]["loss"][-1] < distilled["history"]["loss"][0]
    np.testing.assert_allclose(
        after["loss"], 0.5 * after["student_loss"] + 0.5 * after["distillation_loss"], rtol=1e-5
    )
    # The teacher is frozen; predict gives the student's logits.
    teacher, student = distilled["teacher"], distilled["student"]
    for old, new in zip(distilled["teacher_weights"], teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_allclose(
        distilled["distiller"].predict(real_inputs, verbose=0),
        student.predict(real_inputs, verbose=0),
        atol=1e-6,
    )
    # Frozen only while distilling (Keras' Distiller would leave it frozen):
    # afterwards the caller's teacher fine-tunes like any model.
    assert teacher.trainable
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2))
    teacher.fit(real_inputs, distilled["labels"], batch_size=4, epochs=1, verbose=0)
    changed = [
        not np.array_equal(old, new)
        for old, new in zip(distilled["teacher_weights"], teacher.get_weights(), strict=True)
    ]
    assert sum(changed) > 0.9 * len(changed)


@pytest.mark.filterwarnings("ignore:Gradients do not exist:UserWarning")  # the unused pooler
def test_general_distillation_of_backbones(real_inputs):
    """Backbones have no logits: feature losses only, no labels."""
    teacher, student = backbone(4, 32), backbone(2, 16)
    losses = [EmbeddingDistillation(), HiddenStateDistillation(), AttentionDistillation()]
    distiller = BertDistiller(teacher, student, losses, student_loss_weight=0.0)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = distiller.fit(real_inputs, batch_size=4, epochs=3, verbose=0)
    assert history.history["distillation_loss"][-1] < history.history["distillation_loss"][0]
    with pytest.raises(ValueError, match="student_loss_weight=0.0"):
        BertDistiller(backbone(4, 32), backbone(2, 16), HiddenStateDistillation())
    with pytest.raises(ValueError, match="LogitsDistillation compares logits"):
        BertDistiller(
            backbone(4, 32),
            backbone(2, 16),
            keras.distillation.LogitsDistillation(loss=keras.losses.KLDivergence()),
            student_loss_weight=0.0,
        )


@pytest.mark.parametrize(
    "loss, message",
    [
        (
            HiddenStateDistillation(layer_mapping={2: 3}),
            "HiddenStateDistillation's `layer_mapping` maps student layer 2, but the student "
            "has 2 transformer layers: student layers must be integers in 0..1",
        ),
        (
            HiddenStateDistillation(layer_mapping=[(0, 1), (1, 4)]),
            "maps teacher layer 4, but the teacher has 4 transformer layers: teacher layers "
            "must be integers in 0..3",
        ),
        (
            AttentionDistillation(layer_mapping={-1: 3}),
            "AttentionDistillation's `layer_mapping` maps student layer -1",
        ),
        (
            AttentionDistillation(layer_mapping={0: "last"}),
            "maps teacher layer 'last'",
        ),
        (HiddenStateDistillation(layer_mapping={}), "`layer_mapping` is empty"),
        (HiddenStateDistillation(layer_mapping=[3]), "list of (student_layer, teacher_layer)"),
    ],
)
def test_layer_mapping_past_depth_is_refused(models, loss, message):
    teacher, student = models
    with pytest.raises(ValueError) as error:
        BertDistiller(teacher, student, loss, student_loss_weight=0.0)
    assert message in str(error.value)


def test_vocabulary_mismatch_is_refused(models):
    teacher, _ = models
    student = classifier(2, 16, vocabulary_size=8000)
    for loss in (HiddenStateDistillation(), AttentionDistillation(), EmbeddingDistillation()):
        with pytest.raises(ValueError) as error:
            loss.validate_model_compatibility(teacher, student)
        message = str(error.value)
        assert message.startswith(type(loss).__name__)
        assert "teacher vocabulary_size=30522, student vocabulary_size=8000" in message
        assert "student_from_teacher" in message
    with pytest.raises(ValueError, match="BertDistiller .* vocabulary_size=8000"):
        BertDistiller(teacher, student, HiddenStateDistillation(), student_loss_weight=0.0)


def test_other_misuse_is_refused(models, real_inputs):
    teacher, student = models
    with pytest.raises(
        ValueError,
        match="teacher num_heads=2 \\(layer 1\\), student num_heads=4 \\(layer 0\\).*'mean'",
    ):
        AttentionDistillation().validate_model_compatibility(teacher, classifier(2, 16, 4))
    with pytest.raises(ValueError, match="received head_reduction='max'"):
        AttentionDistillation(head_reduction="max")
    with pytest.raises(ValueError, match="teacher num_classes=2, student num_classes=3"):
        BertDistiller(teacher, BertClassifier(backbone(2, 16), 3), HiddenStateDistillation())
    with pytest.raises(ValueError, match="BertBackbone or BertClassifier; received Functional"):
        BertDistiller(
            teacher, keras.Model(student.inputs, student.outputs), HiddenStateDistillation()
        )
    # Keras' own Distiller hands the losses plain logits: the loss says what to use.
    with pytest.raises(ValueError, match="Train with BertDistiller"):
        HiddenStateDistillation().compute_loss(
            teacher(real_inputs), student(real_inputs), padding_mask=real_inputs["padding_mask"]
        )


def test_student_from_teacher_copies_blocks_exactly(real_inputs):
    teacher = backbone(4, 32)
    student = student_from_teacher(teacher, layers=[0, 2])
    assert isinstance(student, BertBackbone) and student.num_layers == 2
    assert student.get_config()["hidden_dim"] == 32
    pairs = [(student.embeddings, teacher.embeddings), (student.pooler, teacher.pooler)]
    pairs += [(student.transformer_layers[0], teacher.transformer_layers[0])]
    pairs += [(student.transformer_layers[1], teacher.transformer_layers[2])]
    for copy, original in pairs:
        for a, b in zip(copy.get_weights(), original.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        # Copies, not shared variables.
        assert not {id(w) for w in copy.weights} & {id(w) for w in original.weights}

    s, t = distillation_view(student)(real_inputs), distillation_view(teacher)(real_inputs)
    np.testing.assert_array_equal(s["hidden_states"][0], t["hidden_states"][0])
    np.testing.assert_array_equal(s["hidden_states"][1], t["hidden_states"][1])
    # Student block 1 is teacher block 2: equal outputs on the same input.
    mask = real_inputs["padding_mask"]
    x = t["hidden_states"][2]
    np.testing.assert_array_equal(
        student.transformer_layers[1](x, padding_mask=mask),
        teacher.transformer_layers[2](x, padding_mask=mask),
    )
    pooled = student(real_inputs)["pooled_output"]
    np.testing.assert_array_equal(pooled, teacher.pooler(s["hidden_states"][-1][:, 0, :]))

    from_task_model = student_from_teacher(BertClassifier(teacher, 2), [3], dropout=0.0)
    assert from_task_model.num_layers == 1 and from_task_model.dropout == 0.0
    with pytest.raises(
        ValueError, match=r"distinct integers in 0\.\.3 .*received layers=\[0, 4\]"
    ):
        student_from_teacher(teacher, [0, 4])
    with pytest.raises(ValueError, match="received layers=\\[1, 1\\]"):
        student_from_teacher(teacher, [1, 1])
    with pytest.raises(ValueError, match="cannot change \\['hidden_dim'\\]"):
        student_from_teacher(teacher, [0], hidden_dim=16)


def test_distilled_student_saves_without_distiller_weights(distilled, real_inputs, tmp_path):
    distiller, student = distilled["distiller"], distilled["student"]
    projection_ids = {id(w) for p in distiller.projections for w in p.weights}
    assert len(projection_ids) == 4  # W_h, b_h, W_e, b_e train with the student ...
    assert projection_ids <= {id(w) for w in distiller.trainable_weights}
    assert not projection_ids & {id(w) for w in student.weights}  # ... but are not in it

    path = tmp_path / "student.keras"
    student.save(path)
    with zipfile.ZipFile(path) as archive:
        archive.extract("model.weights.h5", tmp_path)
        config = archive.read("config.json").decode()
    names = []
    with h5py.File(tmp_path / "model.weights.h5") as weights:
        weights.visit(names.append)
    assert names and not [n for n in names if "projection" in n or "distill" in n]
    assert "projection" not in config and "distill" not in config and "teacher" not in config

    restored = keras.saving.load_model(path)
    assert type(restored) is BertClassifier
    fresh = BertClassifier(backbone(2, 16), 2, dropout=0.0)
    assert len(restored.weights) == len(fresh.weights) == len(student.weights)
    np.testing.assert_allclose(restored(real_inputs), student(real_inputs), atol=1e-6)
