"""Compression: magnitude and structured pruning, distillation, quantization."""

from tfbert.compression.attention_distillation import AttentionDistillation
from tfbert.compression.augmentation import in_domain_sentences, teacher_labeled_dataset
from tfbert.compression.bert_distiller import BertDistiller
from tfbert.compression.classifier_recipe import distill_student, prune_structure, sparsify
from tfbert.compression.distillation_features import distillation_view
from tfbert.compression.embedding_distillation import EmbeddingDistillation
from tfbert.compression.hidden_state_distillation import HiddenStateDistillation
from tfbert.compression.magnitude_pruning import prune_low_magnitude, strip_pruning
from tfbert.compression.pruning_callbacks import PruningSummaries, UpdatePruningStep
from tfbert.compression.pruning_schedule import ConstantSparsity, PolynomialDecay, PruningSchedule
from tfbert.compression.structured_pruning import (
    ffn_importance,
    head_importance,
    iterative_prune,
    prune_ffn,
    prune_heads,
)
from tfbert.compression.student import student_from_teacher
from tfbert.compression.vocabulary_trimming import trim_vocabulary

__all__ = [
    "AttentionDistillation",
    "BertDistiller",
    "ConstantSparsity",
    "EmbeddingDistillation",
    "HiddenStateDistillation",
    "PolynomialDecay",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "distill_student",
    "distillation_view",
    "ffn_importance",
    "head_importance",
    "in_domain_sentences",
    "iterative_prune",
    "prune_ffn",
    "prune_heads",
    "prune_low_magnitude",
    "prune_structure",
    "sparsify",
    "strip_pruning",
    "student_from_teacher",
    "teacher_labeled_dataset",
    "trim_vocabulary",
]
