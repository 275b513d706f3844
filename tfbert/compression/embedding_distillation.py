"""TinyBERT's embedding-layer distillation loss (Jiao et al., 2020, eq. 9)."""

import keras

from tfbert.compression.distillation_features import (
    FeatureDistillationLoss,
    check_same_vocabulary,
    feature_backbone,
)
from tfbert.compression.hidden_state_distillation import (
    projected_mse,
    width_projection,
)


@keras.saving.register_keras_serializable(package="tfbert")
class EmbeddingDistillation(FeatureDistillationLoss):
    """Mean squared error between the student's and teacher's embedding outputs.

    The embedding output (token + position + segment embeddings after
    LayerNorm, `hidden_states[0]`) e_s (B, T, d) is projected by a learned
    W_e (d, D) and bias when d != D (TinyBERT's W_e, its own matrix, not the
    hidden states' W_h) and compared with the teacher's e_t (B, T, D):

        loss = sum_{b,t} m_bt * mean_D (e_s W_e + b - e_t)^2 / sum_{b,t} m_bt

    over the real tokens (m the padding mask) of all replicas. W_e lives in
    the `BertDistiller`, never in the student. No arguments.

    Example:
        losses = [EmbeddingDistillation(), HiddenStateDistillation(), AttentionDistillation()]
        distiller = BertDistiller(teacher, student, losses, student_loss_weight=0.0)
        distiller.compile(optimizer="adam"); distiller.fit(x, epochs=1)
    """

    def __init__(self):
        self.projection = None
        self.built = False

    def validate_model_compatibility(self, teacher, student):
        check_same_vocabulary(teacher, student, type(self).__name__)

    def build(self, teacher, student):
        """Creates W_e when widths differ (BertDistiller calls it)."""
        self.validate_model_compatibility(teacher, student)
        self.projection = width_projection(
            feature_backbone(student, "student").hidden_dim,
            feature_backbone(teacher, "teacher").hidden_dim,
            "embedding_projection",
        )
        self.built = True

    def compute_loss(self, teacher_outputs, student_outputs, padding_mask=None, **kwargs):
        """The loss from two `distillation_view` outputs and the (B, T) padding mask."""
        self.check_inputs(teacher_outputs, student_outputs, padding_mask)
        return projected_mse(
            teacher_outputs["hidden_states"][0],
            student_outputs["hidden_states"][0],
            self.projection,
            padding_mask,
        )

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
