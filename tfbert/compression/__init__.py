"""Compression: magnitude and structured pruning, distillation, quantization."""

from tfbert.compression.magnitude_pruning import prune_low_magnitude, strip_pruning
from tfbert.compression.pruning_callbacks import PruningSummaries, UpdatePruningStep
from tfbert.compression.pruning_schedule import ConstantSparsity, PolynomialDecay, PruningSchedule

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "prune_low_magnitude",
    "strip_pruning",
]
