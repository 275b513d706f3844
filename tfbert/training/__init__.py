"""Training: optimizers and schedules (strategies and callbacks follow)."""

from tfbert.training.learning_rate_schedule import WarmupPolynomialDecay
from tfbert.training.optimizers import NO_WEIGHT_DECAY, create_adamw
from tfbert.training.precision import cpu_supports_bfloat16, resolve_precision

__all__ = [
    "NO_WEIGHT_DECAY",
    "WarmupPolynomialDecay",
    "cpu_supports_bfloat16",
    "create_adamw",
    "resolve_precision",
]
