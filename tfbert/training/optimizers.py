"""Optimizers configured the way BERT is trained."""

import re

import keras

from tfbert.training.distributed_fit import DistributedOptimizer
from tfbert.training.learning_rate_schedule import PerUpdateSchedule

# Variables that get no weight decay: LayerNorm scale/offset and every bias.
NO_WEIGHT_DECAY = ("gamma", "beta", "bias")


def layerwise_multiplier(path: str, num_layers: int, decay: float) -> float:
    """Learning-rate factor of a variable under layer-wise decay (Clark et al., 2020).

    Block i of `num_layers` trains at `decay ** (num_layers - i)` of the rate,
    the embeddings at `decay ** (num_layers + 1)`, the pooler and task heads
    at the full rate: lower layers, which hold general features, move least.
    """
    if path.startswith("embeddings/"):
        return decay ** (num_layers + 1)
    match = re.match(r"transformer_layer_(\d+)/", path)
    if match:
        return decay ** (num_layers - int(match.group(1)))
    return 1.0


@keras.saving.register_keras_serializable(package="tfbert")
class AdamW(DistributedOptimizer, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` that clips and accumulates gradients over all
    replicas as one device would (`DistributedOptimizer`); same arguments."""


@keras.saving.register_keras_serializable(package="tfbert")
class Lamb(DistributedOptimizer, keras.optimizers.Lamb):
    """`keras.optimizers.Lamb` with `DistributedOptimizer`'s fixes; same arguments."""


@keras.saving.register_keras_serializable(package="tfbert")
class SGD(DistributedOptimizer, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with `DistributedOptimizer`'s fixes; same arguments."""


@keras.saving.register_keras_serializable(package="tfbert")
class LayerwiseAdamW(AdamW):
    """AdamW whose step size shrinks layer by layer towards the embeddings.

    Args:
        num_layers: int. Encoder blocks of the backbone being tuned.
        layerwise_decay: float in (0, 1]. See `layerwise_multiplier`.
        **kwargs: `keras.optimizers.AdamW` arguments.
    """

    def __init__(self, num_layers: int, layerwise_decay: float, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < layerwise_decay <= 1.0:
            raise ValueError(f"`layerwise_decay` must be in (0, 1]; received {layerwise_decay}.")
        self.num_layers = num_layers
        self.layerwise_decay = layerwise_decay

    def build(self, var_list):
        super().build(var_list)
        self._factors = [
            layerwise_multiplier(v.path, self.num_layers, self.layerwise_decay) for v in var_list
        ]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factors[self._get_variable_index(variable)]
        super().update_step(gradient, variable, learning_rate * factor)

    def get_config(self):
        config = super().get_config()
        config.update({"num_layers": self.num_layers, "layerwise_decay": self.layerwise_decay})
        return config


def accumulation_arguments(learning_rate, gradient_accumulation_steps):
    """The learning rate and Keras optimizer arguments for averaging the
    gradients of `gradient_accumulation_steps` batches per update (a schedule
    is wrapped in `PerUpdateSchedule` so it counts updates)."""
    if gradient_accumulation_steps is None:
        return learning_rate, {}
    if not isinstance(gradient_accumulation_steps, int) or gradient_accumulation_steps < 1:
        raise ValueError(
            "`gradient_accumulation_steps` must be a positive integer; received "
            f"{gradient_accumulation_steps!r}."
        )
    if gradient_accumulation_steps == 1:
        return learning_rate, {}
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = PerUpdateSchedule(learning_rate, gradient_accumulation_steps)
    return learning_rate, {"gradient_accumulation_steps": gradient_accumulation_steps}


def _with_bert_settings(optimizer_class, learning_rate, gradient_accumulation_steps, **settings):
    """`optimizer_class` built with `settings`, gradient accumulation and
    BERT's weight-decay exclusions (LayerNorm, biases)."""
    learning_rate, accumulation = accumulation_arguments(
        learning_rate, gradient_accumulation_steps
    )
    optimizer = optimizer_class(learning_rate=learning_rate, **settings, **accumulation)
    optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer


def create_adamw(
    learning_rate,
    weight_decay: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    global_clipnorm: float | None = 1.0,
    layerwise_decay: float | None = None,
    num_layers: int | None = None,
    gradient_accumulation_steps: int | None = None,
) -> AdamW:
    """AdamW with BERT's settings and weight-decay exclusions (LayerNorm, biases).

    Args:
        learning_rate: float or a `LearningRateSchedule` (in optimizer
            updates, also when accumulating gradients).
        weight_decay: float, default 0.01.
        beta_1, beta_2, epsilon: Adam constants, BERT's defaults.
        global_clipnorm: float or None, default 1.0. Global-norm gradient clipping.
        layerwise_decay: float or None. With a value, lower layers learn more
            slowly (`LayerwiseAdamW`); needs `num_layers`.
        num_layers: int. The backbone's encoder blocks, for `layerwise_decay`.
        gradient_accumulation_steps: int or None. Average the gradients of
            this many batches per update: batch B with N steps trains like
            batch N*B (clipping applies to the average), on one device or
            many (`DistributedOptimizer`).
    """
    if layerwise_decay is not None:
        if num_layers is None:
            raise ValueError("`layerwise_decay` needs `num_layers` (the backbone's blocks).")
        optimizer_class = lambda **kwargs: LayerwiseAdamW(  # noqa: E731
            num_layers, layerwise_decay, **kwargs
        )
    else:
        optimizer_class = AdamW
    return _with_bert_settings(
        optimizer_class,
        learning_rate,
        gradient_accumulation_steps,
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=global_clipnorm,
    )


def create_lamb(
    learning_rate,
    weight_decay: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    global_clipnorm: float | None = 1.0,
    gradient_accumulation_steps: int | None = None,
) -> Lamb:
    """LAMB (You et al., 2019) for large batches, with BERT's weight-decay
    exclusions: tfbert's `Lamb`, which is `keras.optimizers.Lamb` (decoupled
    weight decay, trust ratio on every variable) with `DistributedOptimizer`'s
    fixes. Arguments as in `create_adamw`.

    Example:
        optimizer = create_lamb(WarmupPolynomialDecay(2e-3, 1000, 10000))
    """
    return _with_bert_settings(
        Lamb,
        learning_rate,
        gradient_accumulation_steps,
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=global_clipnorm,
    )
