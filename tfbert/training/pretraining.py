"""BERT pretraining as one recipe: `tfbert pretrain` and `tfbert quickstart` run it.

config = PretrainingConfig(data=["corpus.txt"], vocabulary="vocab.txt",
                           output_dir="runs/bert", strategy="auto")
pretrainer, history = pretrain(config)
"""

import dataclasses
import json
import os

import keras

from tfbert.files import atomic_path
from tfbert.models import BertBackbone, BertPretrainer
from tfbert.models.bert.bert_presets import BERT_PRESETS
from tfbert.text import BertTokenizer, pretraining_dataset, read_pretraining_tfrecords
from tfbert.training.callbacks import TrainingBackup, save_atomically, training_callbacks
from tfbert.training.distributed_fit import is_chief
from tfbert.training.learning_rate_schedule import (
    WarmupInverseSqrtDecay,
    WarmupPolynomialDecay,
)
from tfbert.training.optimizers import SGD, accumulation_arguments, create_adamw, create_lamb
from tfbert.training.strategy import (
    check_dataset,
    compile_options,
    per_replica_batch_size,
    resolve_strategy,
    strategy_name,
    strategy_precision,
)

SCHEDULES = ("linear", "polynomial", "inverse_sqrt", "constant")
OPTIMIZERS = ("adamw", "lamb", "sgd")
FINAL_MODEL = "pretrainer.keras"


@dataclasses.dataclass
class PretrainingConfig:
    """Everything a pretraining run needs; `tfbert pretrain` flags and its
    `--config` JSON file use the same names.

    Data is BERT-format text (one sentence per line, blank line between
    documents; masks drawn anew each epoch) or TFRecord shards from
    `write_pretraining_tfrecords` (names ending in .tfrecord; static masks).
    `batch_size` is global: each of R replicas gets batch_size / R.
    `backup_steps` > 0 also backs up every that many steps (a killed run
    then loses at most that many); 0 backs up at the end of each epoch.
    """

    data: list[str]
    vocabulary: str
    output_dir: str
    validation_data: list[str] | None = None
    preset: str = "bert_tiny"
    sequence_length: int = 128
    max_predictions: int = 20
    masked_lm_probability: float = 0.15
    whole_word_masking: bool = True
    dropout: float | None = None
    batch_size: int = 32
    epochs: int = 1
    steps_per_epoch: int = 0
    optimizer: str = "adamw"
    learning_rate: float = 1e-4
    schedule: str = "linear"
    warmup_steps: int | None = None
    decay_power: float = 1.0
    weight_decay: float = 0.01
    clip_norm: float | None = 1.0
    gradient_accumulation_steps: int = 1
    strategy: str = "auto"
    tpu: str | None = None
    cpu_replicas: int | None = None
    cluster_timeout: float = 300.0
    precision: str = "auto"
    seed: int = 0
    verbose: int = 1
    backup: bool = True
    backup_steps: int = 0
    tensorboard: bool = True

    def __post_init__(self):
        if isinstance(self.data, str):
            self.data = [self.data]
        if isinstance(self.validation_data, str):
            self.validation_data = [self.validation_data]
        if self.preset not in BERT_PRESETS:
            raise ValueError(f"Unknown preset {self.preset!r}; use one of {list(BERT_PRESETS)}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {self.schedule!r}; use one of {SCHEDULES}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; use one of {OPTIMIZERS}.")
        if self.backup_steps < 0:
            raise ValueError(
                f"`backup_steps` must be 0 (per epoch) or a positive number of steps; "
                f"received {self.backup_steps}."
            )
        if self.epochs < 1 or self.steps_per_epoch < 0:
            raise ValueError(
                f"Need epochs >= 1 and steps_per_epoch >= 0; received epochs={self.epochs}, "
                f"steps_per_epoch={self.steps_per_epoch}."
            )

    @classmethod
    def from_json(cls, path: str, **overrides) -> "PretrainingConfig":
        """A config from a JSON file of field names; `overrides` win."""
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown setting(s) {unknown} in {path}; known settings: {sorted(known)}."
            )
        return cls(**{**values, **overrides})


def _is_tfrecord(paths) -> bool:
    return all(".tfrecord" in os.fspath(path) for path in paths)


def _dataset(paths, tokenizer, config, batch_size):
    if _is_tfrecord(paths):
        return read_pretraining_tfrecords(paths, batch_size, seed=config.seed)
    return pretraining_dataset(
        paths,
        tokenizer,
        config.sequence_length,
        batch_size,
        masked_lm_probability=config.masked_lm_probability,
        max_predictions=config.max_predictions,
        whole_word_masking=config.whole_word_masking,
        seed=config.seed,
    )


def _schedule(config, total_steps):
    warmup = config.warmup_steps
    if warmup is None:
        warmup = max(1, total_steps // 10)
    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule == "inverse_sqrt":
        return WarmupInverseSqrtDecay(config.learning_rate, warmup)
    power = 1.0 if config.schedule == "linear" else config.decay_power
    return WarmupPolynomialDecay(
        config.learning_rate, min(warmup, total_steps), total_steps, power=power
    )


def _optimizer(config, learning_rate):
    if config.optimizer == "sgd":
        # SGD with momentum, for comparison runs and small experiments.
        learning_rate, accumulation = accumulation_arguments(
            learning_rate, config.gradient_accumulation_steps
        )
        return SGD(learning_rate, momentum=0.9, global_clipnorm=config.clip_norm, **accumulation)
    create = create_adamw if config.optimizer == "adamw" else create_lamb
    return create(
        learning_rate,
        weight_decay=config.weight_decay,
        global_clipnorm=config.clip_norm,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )


# Settings a resumed run may change: where it runs (the global batch stays),
# what it prints, how often it backs up.
RESUMABLE_CHANGES = (
    "strategy", "tpu", "cpu_replicas", "cluster_timeout", "verbose", "tensorboard", "backup_steps"
)  # fmt: skip


def _check_output_dir(config: PretrainingConfig) -> None:
    """Refuses a finished run's folder, and resuming a backup with settings
    that would train otherwise than the run that made it."""
    final = os.path.join(config.output_dir, FINAL_MODEL)
    if os.path.exists(final):
        raise FileExistsError(
            f"{final} already exists: that run finished. Choose a new output_dir; "
            "tfbert does not overwrite a trained model."
        )
    saved = os.path.join(config.output_dir, "config.json")
    if not (
        config.backup
        and os.path.exists(saved)
        and TrainingBackup.latest(os.path.join(config.output_dir, "backup"))
    ):
        return
    with open(saved, encoding="utf-8") as f:
        before = json.load(f)
    now = json.loads(json.dumps(dataclasses.asdict(config)))  # as JSON reads back
    changed = sorted(
        name
        for name in set(before) | set(now)
        if name not in RESUMABLE_CHANGES and before.get(name) != now.get(name)
    )
    if changed:
        differences = ", ".join(f"{n}: {before.get(n)!r} -> {now.get(n)!r}" for n in changed)
        raise ValueError(
            f"{config.output_dir} holds the backup of an unfinished run with other settings "
            f"({differences}); resuming would not train like that run. Use its settings "
            f"(they are in {saved}) to resume, or a new output_dir to start over."
        )


def pretrain(config: PretrainingConfig, callbacks=None):
    """Pretrains a BERT (masked LM + next sentence) with `fit`; returns
    `(pretrainer, history)`; `callbacks` (Keras callbacks) run after tfbert's.

    Runs under `resolve_strategy(config.strategy)` with its precision and
    compile options, BERT's optimizer and schedule, and `training_callbacks`
    in `config.output_dir`: a killed run started again with the same config
    resumes from its last backup (epoch end, or every `backup_steps` steps)
    and ends with the weights of an uninterrupted run. The trained model is written to
    `output_dir/pretrainer.keras` (by the chief); the config beside it.
    """
    _check_output_dir(config)
    strategy = resolve_strategy(
        config.strategy,
        tpu=config.tpu,
        cpu_replicas=config.cpu_replicas,
        cluster_timeout=config.cluster_timeout,
    )
    chief = is_chief(strategy)
    precision = strategy_precision(strategy, config.precision)
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(config.seed)
    per_replica_batch_size(config.batch_size, strategy)

    tokenizer = BertTokenizer(config.vocabulary, sequence_length=config.sequence_length)
    train = _dataset(config.data, tokenizer, config, config.batch_size)
    batches = int(train.cardinality())
    steps = config.steps_per_epoch or batches
    if steps < 1:
        raise ValueError(
            f"The number of batches in {config.data} is not known to tf.data (TFRecord "
            "shards); set steps_per_epoch (the shards' example counts are in "
            "pretraining-info.json)."
        )
    if batches >= steps:
        train = train.take(steps)  # each epoch starts from a fresh pass
    else:
        train = train.repeat()
    check_dataset(train, strategy)
    validation = None
    if config.validation_data:
        validation = check_dataset(
            _dataset(config.validation_data, tokenizer, config, config.batch_size), strategy
        )

    updates = steps * config.epochs // max(1, config.gradient_accumulation_steps)
    overrides = {
        "vocabulary_size": tokenizer.vocabulary_size,
        "max_sequence_length": max(config.sequence_length, 128),
    }
    if config.dropout is not None:
        overrides["dropout"] = config.dropout
    with strategy.scope():
        backbone = BertBackbone.from_preset(config.preset, **overrides)
        pretrainer = BertPretrainer(backbone)
        optimizer = _optimizer(config, _schedule(config, max(1, updates)))
        pretrainer.compile(optimizer=optimizer, **compile_options(strategy))

    if chief:
        with atomic_path(os.path.join(config.output_dir, "config.json")) as staging:
            with open(staging, "w", encoding="utf-8") as f:
                json.dump(dataclasses.asdict(config), f, indent=2)
    extra_callbacks = list(callbacks or [])
    callbacks = (
        training_callbacks(
            config.output_dir,
            config.batch_size,
            strategy=strategy,
            backup=config.backup,
            tensorboard=config.tensorboard,
            backup_steps=config.backup_steps,
        )
        + extra_callbacks
    )
    resumed = ""
    for callback in callbacks:
        if isinstance(callback, TrainingBackup):
            train = callback.resume(train)
            latest = callback.latest(callback.backup_dir)
            if latest:
                resumed = f", resuming at epoch {latest['epoch'] + 1}, step {latest['step']}"
    if config.verbose:
        print(
            f"      {strategy.num_replicas_in_sync} replica(s) "
            f"({strategy_name(strategy)}), precision {precision}, {steps} steps/epoch of "
            f"{config.batch_size}{resumed}",
            flush=True,
        )
    history = pretrainer.fit(
        train,
        validation_data=validation,
        epochs=config.epochs,
        steps_per_epoch=None if batches >= steps else steps,
        shuffle=False,  # the dataset reshuffles itself each epoch
        callbacks=callbacks,
        verbose=config.verbose,
    )
    save_atomically(pretrainer, os.path.join(config.output_dir, FINAL_MODEL))
    return pretrainer, history
