"""What BERT distillation reads from a teacher and a student in one forward pass.

`distillation_view(model)` is a model that shares every layer (and so every
weight) with a `BertBackbone` or `BertClassifier` and returns, from one
pass, the logits (classifiers only), all hidden states and all attention
probabilities. The models themselves are left untouched: their saved form
is the same with or without a view. The helpers here check layer mappings and
vocabularies for the distillation losses and normalise their token means
across replicas.
"""

import keras
from keras import ops

# Keras scales each replica's loss by 1 / num_replicas so that summing the
# replicas' gradients gives the global mean; a loss computed by hand must do
# the same. Pinned keras (<3.16) keeps this private helper in place.
from keras.src.losses.loss import scale_loss_for_distribution

from tfbert.models.bert.bert_backbone import BertBackbone
from tfbert.models.bert.bert_classifier import BertClassifier
from tfbert.models.distributed_trainer import sum_over_replicas

SUPPORTED_MODELS = "a tfbert BertBackbone or BertClassifier"


def feature_backbone(model, role: str = "model") -> BertBackbone:
    """The `BertBackbone` of `model` (the model itself or a classifier's backbone)."""
    if isinstance(model, BertBackbone):
        return model
    if isinstance(model, BertClassifier):
        return model.backbone
    raise ValueError(
        f"BERT feature distillation needs `{role}` to be {SUPPORTED_MODELS}; "
        f"received {type(model).__name__}."
    )


class _DistillationView(keras.Model):
    """See `distillation_view`. A subclassed model, not a functional one: it
    adds no nodes to the wrapped model's layers (whose saved graph stays as
    it was), and Keras 3.15's functional check counts a layer's outputs from
    its first call, which for an encoder block returned no attention scores.
    """

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.source = model  # tracked: the view's weights are the model's
        self.backbone = feature_backbone(model)
        self.built = True  # no weights of its own; the model's are built

    def call(self, inputs, training=None):
        backbone = self.backbone
        x = backbone.embeddings(inputs["token_ids"], inputs["segment_ids"], training=training)
        hidden_states, attention_scores = [x], []
        for block in backbone.transformer_layers:
            x, scores = block(
                x,
                padding_mask=inputs["padding_mask"],
                return_attention_scores=True,
                training=training,
            )
            hidden_states.append(x)
            attention_scores.append(scores)
        outputs = {"hidden_states": hidden_states, "attention_scores": attention_scores}
        model = self.source
        if isinstance(model, BertClassifier):
            # The classifier's own head (BertClassifier.__init__), on the
            # full-length sequence.
            if model.pooling == "cls":
                pooled = backbone.pooler(x[:, 0, :])
            else:
                mask = ops.cast(inputs["padding_mask"], x.dtype)[:, :, None]
                pooled = ops.sum(x * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1)
            logits = model.logits_dense(model.classifier_dropout(pooled, training=training))
            outputs["logits"] = ops.cast(logits, "float32")
        return outputs


def distillation_view(model) -> keras.Model:
    """A model sharing every layer (and weight) of `model`, for distillation.

    It returns a dict: `hidden_states`, a list of num_layers + 1
    (B, T, hidden_dim) tensors (embedding output, then each block),
    `attention_scores`, a list of num_layers (B, num_heads, T, T) float32
    probabilities, and for a `BertClassifier` its float32 `logits` (B, C),
    all from one pass. A classifier pooling [CLS] runs its last block only
    at [CLS]; the view runs it at every position (the hidden-state loss
    reads them all), which gives the same logits up to float rounding.

    Args:
        model: `BertBackbone` or `BertClassifier`.

    Example:
        view = distillation_view(classifier)
        out = view(tokenizer(["a gem of a film"]))
        out["logits"], out["hidden_states"][-1], out["attention_scores"][0]
    """
    return _DistillationView(model, name=f"{model.name}_distillation_view")


def check_same_vocabulary(teacher, student, what: str) -> None:
    """Raises unless teacher and student embed the same token ids."""
    teacher_size = feature_backbone(teacher, "teacher").vocabulary_size
    student_size = feature_backbone(student, "student").vocabulary_size
    if teacher_size != student_size:
        raise ValueError(
            f"{what} feeds the teacher and the student the same token ids and compares "
            "them token by token, so both must use one vocabulary; received teacher "
            f"vocabulary_size={teacher_size}, student vocabulary_size={student_size}. "
            "Build the student with the teacher's vocabulary (e.g. "
            "student_from_teacher(teacher, layers) or BertBackbone.from_preset(name, "
            f"vocabulary_size={teacher_size}))."
        )


def uniform_layer_mapping(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """TinyBERT's mapping: student block i <- teacher block (i + 1) * Lt / Ls - 1.

    Indices are 0-based positions in `transformer_layers`; with 2 student and
    6 teacher blocks this is [(0, 2), (1, 5)], TinyBERT's g(m) = 3m.
    """
    return [
        (index, max((index + 1) * teacher_layers // student_layers - 1, 0))
        for index in range(student_layers)
    ]


def resolve_layer_mapping(
    layer_mapping, student_layers: int, teacher_layers: int, what: str
) -> list[tuple[int, int]]:
    """`layer_mapping` (None, {student: teacher} or [(student, teacher), ...])
    as a checked list of pairs; None is `uniform_layer_mapping`."""
    if layer_mapping is None:
        return uniform_layer_mapping(student_layers, teacher_layers)
    pairs = list(layer_mapping.items()) if isinstance(layer_mapping, dict) else layer_mapping
    try:
        pairs = [(student, teacher) for student, teacher in pairs]
    except (TypeError, ValueError):
        raise ValueError(
            f"{what}'s `layer_mapping` must be a dict {{student_layer: teacher_layer}} or a "
            f"list of (student_layer, teacher_layer) pairs; received {layer_mapping!r}."
        ) from None
    if not pairs:
        raise ValueError(f"{what}'s `layer_mapping` is empty; map at least one layer.")
    for student, teacher in pairs:
        for role, index, depth in (
            ("student", student, student_layers),
            ("teacher", teacher, teacher_layers),
        ):
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < depth:
                raise ValueError(
                    f"{what}'s `layer_mapping` maps {role} layer {index!r}, but the {role} "
                    f"has {depth} transformer layers: {role} layers must be integers in "
                    f"0..{depth - 1} (0-based indices of `transformer_layers`; the "
                    "embeddings have EmbeddingDistillation)."
                )
    return pairs


def features_of(outputs, role: str, what: str) -> dict:
    """`outputs` checked to be a `distillation_view` dict."""
    if not isinstance(outputs, dict) or "hidden_states" not in outputs:
        raise ValueError(
            f"{what} reads the {role}'s hidden states and attention probabilities, which "
            f"tfbert.compression's BertDistiller provides; received {role} outputs of type "
            f"{type(outputs).__name__}. Train with BertDistiller, not keras.distillation."
            "Distiller."
        )
    return outputs


def token_mean(values, padding_mask):
    """Mean of (B, T) `values` over the real tokens of all replicas, as this
    replica's share of the loss (see `scale_loss_for_distribution`)."""
    mask = ops.cast(padding_mask, "float32")
    tokens, replicas = sum_over_replicas(ops.sum(mask))
    total = ops.sum(ops.cast(values, "float32") * mask)
    return scale_loss_for_distribution(ops.divide_no_nan(total * replicas, tokens))


def check_padding_mask(padding_mask, what: str):
    if padding_mask is None:
        raise ValueError(
            f"{what}.compute_loss needs `padding_mask` (B, T), 1 for real tokens; "
            "BertDistiller passes the inputs' padding_mask."
        )


class FeatureDistillationLoss(keras.distillation.DistillationLoss):
    """Base of the losses on `distillation_view` features (hidden states,
    attention probabilities), which `BertDistiller` builds and feeds with the
    padding mask; subclasses set `built` in `build`."""

    reads_features = True  # BertDistiller passes distillation_view outputs
    built = False

    def validate_outputs(self, teacher_outputs, student_outputs):
        features_of(teacher_outputs, "teacher", type(self).__name__)
        features_of(student_outputs, "student", type(self).__name__)

    def mapping_config(self) -> dict:
        """`layer_mapping` as JSON keeps it: a list of [student, teacher] pairs."""
        mapping = self.layer_mapping
        if isinstance(mapping, dict):
            mapping = [[int(student), int(teacher)] for student, teacher in mapping.items()]
        return {"layer_mapping": mapping}

    def check_inputs(self, teacher_outputs, student_outputs, padding_mask):
        """What every `compute_loss` checks first: outputs, mask, built."""
        self.validate_outputs(teacher_outputs, student_outputs)
        check_padding_mask(padding_mask, type(self).__name__)
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} is not built: BertDistiller builds it, or call "
                "build(teacher, student) first."
            )
