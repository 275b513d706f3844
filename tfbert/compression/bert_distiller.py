"""Knowledge distillation of tfbert models on `keras.distillation`."""

import contextlib
import warnings

import keras
from keras import ops, tree

# See distillation_features: Keras' own per-replica loss scaling.
from keras.src.losses.loss import scale_loss_for_distribution, unscale_loss_for_distribution

from tfbert.compression.distillation_features import check_same_vocabulary, distillation_view
from tfbert.models.bert.bert_classifier import BertClassifier
from tfbert.models.distributed_trainer import MultiWorkerTraining


def _without_bare_kl(distillation_loss):
    """A LogitsDistillation whose loss "kl_divergence" is the function, replaced.

    Keras 3.15 resolves `LogitsDistillation()`'s default loss string to the
    function `keras.losses.kl_divergence`, which its `compute_loss` does not
    recognise as KL: it then clips the softened logits into [1e-7, 1] and
    compares those, not the probabilities (T=2, logits (2, -1, 0.5) vs
    (0.1, 0.3, -0.2): 6.68 instead of 0.726). `KLDivergence()` takes the
    probability path Keras documents.
    """
    if not isinstance(distillation_loss, keras.distillation.LogitsDistillation):
        return distillation_loss
    flat = tree.flatten(distillation_loss.loss)
    if not any(loss is keras.losses.kl_divergence for loss in flat):
        return distillation_loss
    warnings.warn(
        "LogitsDistillation's loss 'kl_divergence' resolves to a function that Keras "
        "3.15 applies to clipped logits instead of softened probabilities; BertDistiller "
        "uses LogitsDistillation(temperature, loss=keras.losses.KLDivergence()) instead. "
        "Pass that loss yourself to silence this warning.",
        stacklevel=3,
    )
    return keras.distillation.LogitsDistillation(
        temperature=distillation_loss.temperature,
        loss=tree.map_structure(
            lambda loss: (
                keras.losses.KLDivergence() if loss is keras.losses.kl_divergence else loss
            ),
            distillation_loss.loss,
        ),
    )


@keras.saving.register_keras_serializable(package="tfbert")
class BertDistiller(MultiWorkerTraining, keras.distillation.Distiller):
    """Trains a tfbert student from a frozen tfbert teacher with `fit`.

    A `keras.distillation.Distiller` for `BertBackbone` and `BertClassifier`
    teachers and students. Keras' distiller hands each loss the two models'
    final outputs, and intermediate features only of named layers of
    functional models, with no learnable parts; BERT's losses need every
    block's hidden states and attention probabilities, and a projection
    when the widths differ. So this subclass:

    - runs each model once per step through `distillation_view` (weights
      shared with the model), which yields logits, hidden states and
      attention probabilities from the same pass;
    - gives losses with `reads_features` (`HiddenStateDistillation`,
      `AttentionDistillation`, `EmbeddingDistillation`) those feature dicts
      and the padding mask, every other loss (Keras' `LogitsDistillation`)
      the logits, as Keras does;
    - owns the losses' projections (TinyBERT's W_h, W_e) as its own
      weights: they train with the student but are not part of it, so
      `distiller.student.save(...)` writes the plain student. A Python
      loss object cannot hold Keras-tracked weights, and the student must
      not;
    - carries the multi-worker fixes (`MultiWorkerTraining`), so `fit` also works
      across several workers, normalises token means over all replicas,
      and reports its losses unscaled under `tf.distribute` (Keras'
      distiller reports them divided by the replica count).

    The loss is a * student loss + (1 - a) * sum_i w_i L_i (Keras'). The
    student loss reads the labels `y`; without `y`, or with
    `student_loss_weight=0`, only distillation trains (general
    distillation, or TinyBERT's augmented data). `predict` gives the
    student's outputs. A backbone has no logits: with a backbone teacher or
    student only the feature losses apply.

    Args:
        teacher: trained `BertBackbone` or `BertClassifier`; frozen.
        student: `BertBackbone` or `BertClassifier` with the teacher's
            vocabulary (`student_from_teacher`, or
            `BertBackbone.from_preset(...)`).
        distillation_losses: one loss or a list, e.g.
            `keras.distillation.LogitsDistillation(temperature=2.0,
            loss=keras.losses.KLDivergence())`, `HiddenStateDistillation()`.
        distillation_loss_weights: list of floats, default all 1.0.
        student_loss_weight: float in [0, 1], default 0.5.
        name: str, default "bert_distiller".

    Example:
        student = BertClassifier(student_from_teacher(teacher, layers=[0, 2, 4]), 2)
        distiller = BertDistiller(teacher, student, [HiddenStateDistillation()])
        distiller.compile(optimizer=create_adamw(1e-4)); distiller.fit(x, labels, epochs=2)
    """

    def __init__(
        self,
        teacher,
        student,
        distillation_losses,
        distillation_loss_weights=None,
        student_loss_weight: float = 0.5,
        name: str = "bert_distiller",
        **kwargs,
    ):
        if not isinstance(distillation_losses, (list, tuple)):
            distillation_losses = [distillation_losses]
        distillation_losses = [_without_bare_kl(loss) for loss in distillation_losses]
        for loss in distillation_losses:
            if getattr(loss, "teacher_layer_name", None) or getattr(
                loss, "student_layer_name", None
            ):
                raise ValueError(
                    "BertDistiller does not read named layers (FeatureDistillation with "
                    f"teacher_layer_name={loss.teacher_layer_name!r}, student_layer_name="
                    f"{loss.student_layer_name!r}); use HiddenStateDistillation, "
                    "AttentionDistillation or EmbeddingDistillation with a layer_mapping."
                )
        teacher_trainable = teacher.trainable
        super().__init__(
            teacher,
            student,
            distillation_losses,
            distillation_loss_weights=distillation_loss_weights,
            student_loss_weight=student_loss_weight,
            name=name,
            **kwargs,
        )
        # Keras' Distiller freezes the caller's teacher for good; here it is
        # frozen only while this distiller trains (`fit`, `train_on_batch`), so
        # the teacher fine-tunes afterwards like any model.
        self._teacher_trainable = teacher_trainable
        teacher.trainable = teacher_trainable
        has_logits = all(isinstance(model, BertClassifier) for model in (teacher, student))
        projections = []
        for loss in self.distillation_losses:
            if getattr(loss, "reads_features", False):
                loss.build(teacher, student)
                if getattr(loss, "projection", None) is not None:
                    projections.append(loss.projection)
            elif not has_logits:
                raise ValueError(
                    f"{type(loss).__name__} compares logits, which a BertBackbone teacher or "
                    f"student does not have (teacher {type(teacher).__name__}, student "
                    f"{type(student).__name__}); use classifiers, or only "
                    "HiddenStateDistillation / AttentionDistillation / EmbeddingDistillation."
                )
        if not has_logits and self.student_loss_weight > 0:
            raise ValueError(
                "A BertBackbone student has no logits for a student loss; pass "
                f"student_loss_weight=0.0 (received {self.student_loss_weight})."
            )
        # Tracked here, so they train with the student and save with the
        # distiller, never with the student.
        self.projections = projections
        self.teacher_view = distillation_view(teacher)
        self.student_view = distillation_view(student)
        self.built = True  # teacher, student and projections are built

    @contextlib.contextmanager
    def _frozen_teacher(self):
        self.teacher.trainable = False
        try:
            yield
        finally:
            self.teacher.trainable = self._teacher_trainable

    def fit(self, *args, **kwargs):
        with self._frozen_teacher():
            return super().fit(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        with self._frozen_teacher():
            return super().train_on_batch(*args, **kwargs)

    def _validate_models(self, teacher, student):
        # Keras' check wants equal output shapes, which backbones of
        # different widths never have; what must agree is checked here.
        check_same_vocabulary(teacher, student, "BertDistiller")
        if isinstance(teacher, BertClassifier) and isinstance(student, BertClassifier):
            if teacher.num_classes != student.num_classes:
                raise ValueError(
                    "The teacher's and student's logits must have the same classes; "
                    f"received teacher num_classes={teacher.num_classes}, student "
                    f"num_classes={student.num_classes}."
                )

    def compile(self, optimizer="adam", loss="auto", metrics=None, **kwargs):
        """Keras' compile; loss "auto" is cross-entropy on the student's logits.

        The loss is only computed with labels and `student_loss_weight > 0`.
        """
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def call(self, inputs, training=None):
        """The student's `distillation_view` outputs (logits, hidden states, attention)."""
        return self.student_view(inputs, training=training)

    def _student_loss_value(self, y, logits, sample_weight):
        loss_fn = self._student_loss
        if isinstance(loss_fn, keras.losses.Loss):
            return loss_fn(y, logits, sample_weight=sample_weight)  # scaled per replica
        # A plain function returns per-example values: mean, then scale as a Loss does.
        return scale_loss_for_distribution(ops.mean(loss_fn(y, logits)))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """a * student loss + (1 - a) * sum_i w_i L_i, this replica's share."""
        if y_pred is None:
            y_pred = self(x, training=training)
        student_logits = y_pred.get("logits")
        student_loss = ops.zeros((), "float32")
        if self.student_loss_weight > 0.0 and y is not None:
            student_loss = ops.cast(
                self._student_loss_value(y, student_logits, sample_weight), "float32"
            )
        distillation_loss = ops.zeros((), "float32")
        if self.student_loss_weight < 1.0:
            teacher_features = self.teacher_view(x, training=False)
            for loss_fn, weight in zip(
                self.distillation_losses, self.distillation_loss_weights, strict=True
            ):
                if getattr(loss_fn, "reads_features", False):
                    teacher_out, student_out = teacher_features, y_pred
                    extra = {"padding_mask": x["padding_mask"]}
                else:
                    teacher_out, student_out, extra = (
                        teacher_features["logits"],
                        student_logits,
                        {},
                    )
                loss_fn.validate_outputs(teacher_out, student_out)
                value = loss_fn.compute_loss(teacher_out, student_out, **extra)
                distillation_loss = distillation_loss + weight * ops.cast(value, "float32")
        total = (
            self.student_loss_weight * student_loss
            + (1.0 - self.student_loss_weight) * distillation_loss
        )
        # Each replica's values are its share (divided by the replica count);
        # the trackers average replicas, so they get the whole.
        self.student_loss_tracker.update_state(unscale_loss_for_distribution(student_loss))
        self.distillation_loss_tracker.update_state(
            unscale_loss_for_distribution(distillation_loss)
        )
        self.total_loss_tracker.update_state(unscale_loss_for_distribution(total))
        for extra_loss in self.losses:  # the student's regularizers, add_loss()
            total = total + scale_loss_for_distribution(ops.cast(ops.sum(extra_loss), "float32"))
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logits = y_pred.get("logits") if isinstance(y_pred, dict) else y_pred
        return super().compute_metrics(x, y, logits, sample_weight=sample_weight)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.student(x, training=False)
