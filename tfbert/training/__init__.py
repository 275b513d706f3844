"""Training: strategies, multi-worker fit, optimizers, schedules, callbacks, pretraining."""

from tfbert.training.callbacks import (
    AtomicModelCheckpoint,
    TrainingBackup,
    TrainingMonitor,
    save_atomically,
    skip_epochs,
    training_callbacks,
)
from tfbert.training.distributed_fit import DistributedOptimizer, is_chief
from tfbert.training.learning_rate_schedule import (
    PerUpdateSchedule,
    WarmupInverseSqrtDecay,
    WarmupPolynomialDecay,
)
from tfbert.training.optimizers import (
    NO_WEIGHT_DECAY,
    SGD,
    AdamW,
    Lamb,
    LayerwiseAdamW,
    create_adamw,
    create_lamb,
    layerwise_multiplier,
)
from tfbert.training.precision import cpu_flags, cpu_supports_bfloat16, resolve_precision
from tfbert.training.pretraining import PretrainingConfig, pretrain
from tfbert.training.strategy import (
    check_dataset,
    compile_options,
    free_ports,
    global_batch_size,
    is_tpu_strategy,
    per_replica_batch_size,
    read_tf_config,
    resolve_strategy,
    split_cpu,
    strategy_precision,
)

__all__ = [
    "free_ports",
    "AdamW",
    "AtomicModelCheckpoint",
    "DistributedOptimizer",
    "Lamb",
    "SGD",
    "LayerwiseAdamW",
    "NO_WEIGHT_DECAY",
    "PerUpdateSchedule",
    "PretrainingConfig",
    "TrainingBackup",
    "TrainingMonitor",
    "WarmupInverseSqrtDecay",
    "WarmupPolynomialDecay",
    "check_dataset",
    "compile_options",
    "cpu_flags",
    "cpu_supports_bfloat16",
    "create_adamw",
    "create_lamb",
    "global_batch_size",
    "is_chief",
    "is_tpu_strategy",
    "layerwise_multiplier",
    "per_replica_batch_size",
    "pretrain",
    "read_tf_config",
    "resolve_precision",
    "resolve_strategy",
    "save_atomically",
    "skip_epochs",
    "split_cpu",
    "strategy_precision",
    "training_callbacks",
]
