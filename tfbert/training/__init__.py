"""Training: optimizers and schedules (strategies and callbacks follow)."""

from tfbert.training.learning_rate_schedule import WarmupPolynomialDecay
from tfbert.training.optimizers import (
    NO_WEIGHT_DECAY,
    LayerwiseAdamW,
    create_adamw,
    layerwise_multiplier,
)
from tfbert.training.precision import cpu_supports_bfloat16, resolve_precision

__all__ = [
    "LayerwiseAdamW",
    "NO_WEIGHT_DECAY",
    "WarmupPolynomialDecay",
    "cpu_supports_bfloat16",
    "create_adamw",
    "layerwise_multiplier",
    "resolve_precision",
]
