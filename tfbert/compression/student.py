"""A smaller BERT initialised from some of a teacher's blocks (DistilBERT, Sanh et al., 2019)."""

from tfbert.models.bert.bert_backbone import BertBackbone

# Constructor kwargs that would change a copied weight's shape.
_SHAPE_KWARGS = (
    "vocabulary_size",
    "num_layers",
    "num_heads",
    "hidden_dim",
    "intermediate_dim",
    "max_sequence_length",
    "num_segments",
    "head_dim",
)


def student_from_teacher(teacher, layers: list[int], **overrides) -> BertBackbone:
    """A new `BertBackbone` holding exact copies of `layers` of the teacher.

    The student has `len(layers)` blocks: block j is a copy of teacher block
    `layers[j]`; the embeddings and pooler are copied too, and every other
    setting (sizes, activation, epsilon, dtype) is the teacher's. DistilBERT
    keeps every other layer: `layers=[0, 2, 4]` of a 6-layer teacher. The
    copy shares no variables with the teacher. For a student of another
    width, build it from a preset (`BertBackbone.from_preset("bert_mini",
    vocabulary_size=teacher.vocabulary_size)`) and let the distillation
    losses' projections bridge the widths.

    Args:
        teacher: `BertBackbone`, or a task model with one (`.backbone`).
        layers: list of distinct 0-based indices of `teacher.transformer_layers`.
        **overrides: kwargs that change no weight shape, e.g. `dropout=0.0`,
            `dtype="mixed_bfloat16"`, `name`.

    Example:
        teacher = BertBackbone.from_checkpoint(minilm_checkpoint_dir())
        student = student_from_teacher(teacher, layers=[0, 2, 4])
        student.num_layers  # 3
    """
    backbone = getattr(teacher, "backbone", teacher)
    if not isinstance(backbone, BertBackbone):
        raise ValueError(
            "`teacher` must be a tfbert BertBackbone or a task model with a `.backbone`; "
            f"received {type(teacher).__name__}."
        )
    depth = backbone.num_layers
    if (
        not isinstance(layers, (list, tuple))
        or not layers
        or any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < depth for i in layers)
        or len(set(layers)) != len(layers)
    ):
        raise ValueError(
            f"`layers` must be a non-empty list of distinct integers in 0..{depth - 1} (the "
            f"teacher has {depth} transformer layers); received layers={layers!r}."
        )
    fixed = sorted(set(overrides) & set(_SHAPE_KWARGS))
    if fixed:
        raise ValueError(
            f"student_from_teacher copies weights, so it cannot change {fixed}; received "
            f"{ {key: overrides[key] for key in fixed} }. Build a student of another size "
            "with BertBackbone.from_preset(...) or BertBackbone(...)."
        )
    config = backbone.get_config()
    for key in ("name", "trainable", "pruning"):
        config.pop(key, None)
    for key in ("num_heads", "intermediate_dim"):  # per-layer sizes (structured pruning)
        if isinstance(config[key], list):
            config[key] = [config[key][index] for index in layers]
    student = BertBackbone(**{**config, "num_layers": len(layers), **overrides})
    student.embeddings.set_weights(backbone.embeddings.get_weights())
    for block, index in zip(student.transformer_layers, layers, strict=True):
        block.set_weights(backbone.transformer_layers[index].get_weights())
    student.pooler.set_weights(backbone.pooler.get_weights())
    return student
