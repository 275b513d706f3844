"""Attention-probability distillation (TinyBERT's attention loss, MiniLM's KL form)."""

import keras
from keras import ops

from tfbert.compression.distillation_features import (
    FeatureDistillationLoss,
    check_same_vocabulary,
    feature_backbone,
    resolve_layer_mapping,
    token_mean,
)

HEAD_REDUCTIONS = (None, "mean")


@keras.saving.register_keras_serializable(package="tfbert")
class AttentionDistillation(FeatureDistillationLoss):
    """KL divergence from the teacher's attention probabilities to the student's.

    For each mapped pair (student block s, teacher block t) and every real
    query token, KL(teacher row || student row) over the keys of that
    block's (B, N, T, T) attention probabilities, as MiniLM does (TinyBERT
    compares the same maps with MSE on pre-softmax scores); averaged over
    heads, real query tokens (padding mask m, global across replicas) and
    pairs:

        loss = mean over pairs of sum_{b,n,t} m_bt KL(A_t[b,n,t] || A_s[b,n,t])
                                  / (N * sum_{b,t} m_bt)

    Padded keys have probability 0 in both maps and add nothing; each log
    is taken of max(p, `epsilon`). Heads are compared one to one, so the
    student must have the teacher's number of heads, as in TinyBERT; with
    `head_reduction="mean"` each model's heads are first averaged into one
    distribution per query (any head counts, less signal).

    Args:
        layer_mapping: None (default), dict {student_layer: teacher_layer} or
            list of pairs, 0-based indices of `transformer_layers`; None is
            TinyBERT's uniform mapping (see `HiddenStateDistillation`).
            MiniLM distills the last block only: {Ls - 1: Lt - 1}.
        head_reduction: None (default, head by head) or "mean".
        epsilon: float, default 1e-12. Floor of the probabilities in the logs.

    Example:
        loss = AttentionDistillation(layer_mapping={1: 5})
        distiller = BertDistiller(teacher, student, [loss], student_loss_weight=0.0)
        distiller.compile(optimizer="adam"); distiller.fit(x, epochs=1)
    """

    def __init__(
        self,
        layer_mapping: dict | list | None = None,
        head_reduction: str | None = None,
        epsilon: float = 1e-12,
    ):
        if head_reduction not in HEAD_REDUCTIONS:
            raise ValueError(
                f"`head_reduction` must be None (compare head by head) or 'mean' (average "
                f"each model's heads first); received head_reduction={head_reduction!r}."
            )
        if not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
            raise ValueError(f"`epsilon` must be a number in (0, 1); received {epsilon!r}.")
        self.layer_mapping = layer_mapping
        self.head_reduction = head_reduction
        self.epsilon = float(epsilon)
        self.pairs = None

    def validate_model_compatibility(self, teacher, student):
        what = type(self).__name__
        check_same_vocabulary(teacher, student, what)
        teacher, student = (
            feature_backbone(teacher, "teacher"),
            feature_backbone(student, "student"),
        )
        pairs = resolve_layer_mapping(
            self.layer_mapping, student.num_layers, teacher.num_layers, what
        )
        for student_layer, teacher_layer in pairs:
            teacher_heads = teacher.transformer_layers[teacher_layer].num_heads
            student_heads = student.transformer_layers[student_layer].num_heads
            if self.head_reduction is None and teacher_heads != student_heads:
                raise ValueError(
                    f"{what} compares attention head by head, so each student layer needs "
                    f"the heads of the teacher layer mapped to it; received teacher "
                    f"num_heads={teacher_heads} (layer {teacher_layer}), student "
                    f"num_heads={student_heads} (layer {student_layer}). Build the student "
                    f"with num_heads={teacher_heads}, or pass head_reduction='mean'."
                )
        return pairs

    def build(self, teacher, student):
        """Resolves the mapping (BertDistiller calls it); creates no weights."""
        self.pairs = self.validate_model_compatibility(teacher, student)
        self.built = True

    def _log(self, probabilities):
        return ops.log(ops.maximum(probabilities, self.epsilon))

    def _kl(self, teacher, student, padding_mask):
        teacher, student = ops.cast(teacher, "float32"), ops.cast(student, "float32")
        if self.head_reduction == "mean":
            # (B, N, T, S) -> (B, 1, T, S): one distribution per query.
            teacher = ops.mean(teacher, axis=1, keepdims=True)
            student = ops.mean(student, axis=1, keepdims=True)
        kl = ops.sum(teacher * (self._log(teacher) - self._log(student)), axis=-1)  # (B, N, T)
        return token_mean(ops.mean(kl, axis=1), padding_mask)

    def compute_loss(self, teacher_outputs, student_outputs, padding_mask=None, **kwargs):
        """The loss from two `distillation_view` outputs and the (B, T) padding mask."""
        self.check_inputs(teacher_outputs, student_outputs, padding_mask)
        losses = [
            self._kl(
                teacher_outputs["attention_scores"][teacher],
                student_outputs["attention_scores"][student],
                padding_mask,
            )
            for student, teacher in self.pairs
        ]
        return ops.sum(ops.stack(losses)) / len(losses)

    def get_config(self):
        return {
            **self.mapping_config(),
            "head_reduction": self.head_reduction,
            "epsilon": self.epsilon,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
