"""TinyBERT's hidden-state distillation loss (Jiao et al., 2020, eq. 8)."""

import keras
from keras import ops

from tfbert.compression.distillation_features import (
    FeatureDistillationLoss,
    check_same_vocabulary,
    feature_backbone,
    resolve_layer_mapping,
    token_mean,
)


def width_projection(student_dim: int, teacher_dim: int, name: str):
    """TinyBERT's learned W (student width -> teacher width), or None when equal.

    Built at once (float32), so that a distiller made under a strategy's
    scope creates its variables there.
    """
    if student_dim == teacher_dim:
        return None
    projection = keras.layers.Dense(teacher_dim, dtype="float32", name=name)
    projection.build((None, None, student_dim))
    return projection


def projected_mse(teacher_hidden, student_hidden, projection, padding_mask):
    """Mean over real tokens of mean_d (student W + b - teacher)^2, this replica's share."""
    student_hidden = ops.cast(student_hidden, "float32")
    if projection is not None:
        student_hidden = projection(student_hidden)
    squared = ops.square(student_hidden - ops.cast(teacher_hidden, "float32"))  # (B, T, D)
    return token_mean(ops.mean(squared, axis=-1), padding_mask)


@keras.saving.register_keras_serializable(package="tfbert")
class HiddenStateDistillation(FeatureDistillationLoss):
    """Mean squared error between mapped student and teacher block outputs.

    For each mapped pair (student block s, teacher block t), the student's
    output h_s (B, T, d) is projected to the teacher's width by a learned
    W_h (d, D) and bias when d != D (TinyBERT's W_h, one matrix shared by all
    pairs) and compared with the teacher's h_t (B, T, D):

        loss = mean over pairs of  sum_{b,t} m_bt * mean_D (h_s W_h + b - h_t)^2
                                   / sum_{b,t} m_bt

    with m the padding mask: padded positions carry no signal and are left
    out (TinyBERT's code averages over them too). Under `tf.distribute` the
    token count is the global one, so any number of replicas trains as one
    device. W_h lives in the `BertDistiller` (see there), never in the student.

    Args:
        layer_mapping: None (default), dict {student_layer: teacher_layer} or
            list of (student_layer, teacher_layer) pairs, 0-based indices of
            `transformer_layers`. None is TinyBERT's uniform mapping: student
            block i <- teacher block (i + 1) * Lt / Ls - 1 (2 of 6 blocks:
            {0: 2, 1: 5}). A pair past either model's depth is a ValueError.

    Example:
        loss = HiddenStateDistillation(layer_mapping={0: 1, 1: 3})
        distiller = BertDistiller(teacher, student, [loss], student_loss_weight=0.0)
        distiller.compile(optimizer="adam"); distiller.fit(x, epochs=1)
    """

    def __init__(self, layer_mapping: dict | list | None = None):
        self.layer_mapping = layer_mapping
        self.pairs = None
        self.projection = None

    def validate_model_compatibility(self, teacher, student):
        check_same_vocabulary(teacher, student, type(self).__name__)
        teacher, student = (
            feature_backbone(teacher, "teacher"),
            feature_backbone(student, "student"),
        )
        return resolve_layer_mapping(
            self.layer_mapping, student.num_layers, teacher.num_layers, type(self).__name__
        )

    def build(self, teacher, student):
        """Resolves the mapping and creates W_h when widths differ (BertDistiller calls it)."""
        self.pairs = self.validate_model_compatibility(teacher, student)
        self.projection = width_projection(
            feature_backbone(student).hidden_dim,
            feature_backbone(teacher).hidden_dim,
            "hidden_state_projection",
        )
        self.built = True

    def compute_loss(self, teacher_outputs, student_outputs, padding_mask=None, **kwargs):
        """The loss from two `distillation_view` outputs and the (B, T) padding mask."""
        self.check_inputs(teacher_outputs, student_outputs, padding_mask)
        # hidden_states[0] is the embedding output; block i's output is i + 1.
        losses = [
            projected_mse(
                teacher_outputs["hidden_states"][teacher + 1],
                student_outputs["hidden_states"][student + 1],
                self.projection,
                padding_mask,
            )
            for student, teacher in self.pairs
        ]
        return ops.sum(ops.stack(losses)) / len(losses)

    def get_config(self):
        return self.mapping_config()

    @classmethod
    def from_config(cls, config):
        return cls(**config)
