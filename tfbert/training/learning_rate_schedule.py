"""BERT's learning-rate schedule: linear warmup, then polynomial (linear) decay."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfbert")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from 0 to `peak_learning_rate` over `warmup_steps`, then
    decays to `end_learning_rate` at `total_steps` as (1 - progress) ** power.

    power=1 is the linear decay of BERT (Devlin et al., 2018).

    Args:
        peak_learning_rate: float.
        warmup_steps: int.
        total_steps: int. Step at which `end_learning_rate` is reached.
        end_learning_rate: float, default 0.0.
        power: float, default 1.0.

    Example:
        schedule = WarmupPolynomialDecay(1e-4, warmup_steps=100, total_steps=1000)
        optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    """

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        total_steps: int,
        end_learning_rate: float = 0.0,
        power: float = 1.0,
    ):
        if not 0 <= warmup_steps <= total_steps or total_steps < 1:
            raise ValueError(
                "Need 0 <= warmup_steps <= total_steps and total_steps >= 1; "
                f"received warmup_steps={warmup_steps}, total_steps={total_steps}."
            )
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.end_learning_rate = end_learning_rate
        self.power = power

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        decay_steps = ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        warmup_rate = self.peak_learning_rate * step / warmup
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        decay_rate = (self.peak_learning_rate - self.end_learning_rate) * ops.power(
            1.0 - progress, self.power
        ) + self.end_learning_rate
        return ops.where(step < self.warmup_steps, warmup_rate, decay_rate)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
        }


@keras.saving.register_keras_serializable(package="tfbert")
class WarmupInverseSqrtDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly to `peak_learning_rate` over `warmup_steps`, then decays
    as 1 / sqrt(step): the Transformer's schedule (Vaswani et al., 2017),
    parameterised by its peak instead of the model width.

    Args:
        peak_learning_rate: float. Rate at step `warmup_steps`.
        warmup_steps: int >= 1.

    Example:
        schedule = WarmupInverseSqrtDecay(7e-4, warmup_steps=4000)
    """

    def __init__(self, peak_learning_rate: float, warmup_steps: int):
        if warmup_steps < 1:
            raise ValueError(f"`warmup_steps` must be >= 1; received {warmup_steps}.")
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.maximum(ops.cast(step, "float32"), 1.0)
        warmup = float(self.warmup_steps)
        return self.peak_learning_rate * ops.minimum(step / warmup, ops.sqrt(warmup / step))

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="tfbert")
class PerUpdateSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Runs `schedule` on optimizer updates instead of micro-batches.

    With `gradient_accumulation_steps=N`, Keras optimizers count every
    micro-batch and hand that count to the schedule; this wrapper divides it
    by N so warmup and decay lengths stay in updates, and N micro-batches of
    B train exactly like one batch of N*B.

    Args:
        schedule: a `LearningRateSchedule`.
        accumulation_steps: int >= 1, the optimizer's `gradient_accumulation_steps`.
    """

    def __init__(self, schedule, accumulation_steps: int):
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        self.schedule = schedule
        self.accumulation_steps = accumulation_steps

    def __call__(self, step):
        return self.schedule(ops.floor_divide(step, self.accumulation_steps))

    def get_config(self):
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "accumulation_steps": self.accumulation_steps,
        }
