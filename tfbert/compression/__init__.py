"""Compression: magnitude and structured pruning, distillation, quantization."""

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

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "ffn_importance",
    "head_importance",
    "iterative_prune",
    "prune_ffn",
    "prune_heads",
    "prune_low_magnitude",
    "strip_pruning",
]
