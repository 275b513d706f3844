"""When to prune and to which sparsity: tensorflow-model-optimization's two
public schedules, with the same arguments and the same values at every step,
so that tfmot is not needed at run time.

A schedule maps a training step (the optimizer's iteration count) to
`(should_prune, sparsity)`: masks are recomputed at steps where `should_prune`
is true, every `frequency` steps from `begin_step` up to `end_step`
(`-1`: no end), and held in between.
"""

import keras


def _check_sparsity(name: str, value) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"`{name}` must be a fraction in [0, 1) (0.5 prunes half the weights); "
            f"received {name}={value!r}."
        )


def _check_steps(begin_step, end_step, frequency, allow_no_end: bool) -> None:
    if not isinstance(begin_step, int) or begin_step < 0:
        raise ValueError(f"`begin_step` must be an integer >= 0; received {begin_step!r}.")
    if not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"`frequency` must be an integer >= 1; received {frequency!r}.")
    if allow_no_end and end_step == -1:
        return
    allowed = "-1 (no end) or " if allow_no_end else ""
    if not isinstance(end_step, int) or end_step < begin_step:
        raise ValueError(
            f"`end_step` must be {allowed}an integer >= begin_step={begin_step}; "
            f"received end_step={end_step!r}."
        )


class PruningSchedule:
    """Base of the pruning schedules: `schedule(step) -> (should_prune, sparsity)`.

    Subclasses set `begin_step`, `end_step` and `frequency`, implement
    `sparsity(step)` and `get_config`, and register themselves with
    `keras.saving.register_keras_serializable` so a pruning-wrapped model
    saves and loads with them.
    """

    begin_step: int
    end_step: int
    frequency: int

    def should_prune(self, step: int) -> bool:
        step = int(step)
        in_range = step >= self.begin_step and (self.end_step < 0 or step <= self.end_step)
        return in_range and (step - self.begin_step) % self.frequency == 0

    def sparsity(self, step: int) -> float:
        raise NotImplementedError

    def __call__(self, step) -> tuple[bool, float]:
        return self.should_prune(step), self.sparsity(step)

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfbert")
class ConstantSparsity(PruningSchedule):
    """The same sparsity at every pruning step (tfmot's `ConstantSparsity`).

    Args:
        target_sparsity: float in [0, 1).
        begin_step: int >= 0. First step that prunes.
        end_step: int, default -1 (prune until training ends). Last step
            that may prune.
        frequency: int, default 100. Prune every `frequency` steps.

    Example:
        schedule = ConstantSparsity(0.5, begin_step=0, frequency=10)
        pruned = prune_low_magnitude(classifier, schedule)
    """

    def __init__(
        self, target_sparsity: float, begin_step: int, end_step: int = -1, frequency: int = 100
    ):
        _check_sparsity("target_sparsity", target_sparsity)
        _check_steps(begin_step, end_step, frequency, allow_no_end=True)
        self.target_sparsity = float(target_sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency

    def sparsity(self, step) -> float:
        return self.target_sparsity

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="tfbert")
class PolynomialDecay(PruningSchedule):
    """Sparsity rising fast, then levelling off (Zhu & Gupta, 2017; tfmot's `PolynomialDecay`).

    sparsity(step) = final + (initial - final) * (1 - p) ** power, with
    p = (step - begin_step) / (end_step - begin_step) clipped to [0, 1].

    Args:
        initial_sparsity: float in [0, 1), at `begin_step`.
        final_sparsity: float in [0, 1), reached at `end_step`.
        begin_step: int >= 0.
        end_step: int > begin_step. Pruning stops here; the masks are kept.
        power: float, default 3.
        frequency: int, default 100.

    Example:
        schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=400, frequency=20)
        pruned = prune_low_magnitude(classifier, schedule)
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
        frequency: int = 100,
    ):
        _check_sparsity("initial_sparsity", initial_sparsity)
        _check_sparsity("final_sparsity", final_sparsity)
        _check_steps(begin_step, end_step, frequency, allow_no_end=False)
        if end_step == begin_step:
            raise ValueError(
                f"`end_step` must be greater than begin_step={begin_step} for a decay; "
                f"received end_step={end_step}. For one fixed sparsity use ConstantSparsity."
            )
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.begin_step = begin_step
        self.end_step = end_step
        self.power = power
        self.frequency = frequency

    def sparsity(self, step) -> float:
        progress = (int(step) - self.begin_step) / (self.end_step - self.begin_step)
        progress = min(1.0, max(0.0, progress))
        return (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power
        )

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


_SCHEDULES = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}


def get_schedule(schedule) -> PruningSchedule:
    """A tfbert schedule from one of ours, tfmot's `ConstantSparsity`/`PolynomialDecay`
    (converted by their config, without importing tfmot) or a serialized config."""
    if isinstance(schedule, PruningSchedule):
        return schedule
    if isinstance(schedule, dict):
        return keras.saving.deserialize_keras_object(schedule)
    name = type(schedule).__name__
    if type(schedule).__module__.startswith("tensorflow_model_optimization"):
        if name in _SCHEDULES:
            return _SCHEDULES[name](**schedule.get_config()["config"])
        raise ValueError(
            f"tfmot's {name} schedule has no tfbert equivalent; use "
            "ConstantSparsity or PolynomialDecay (from tfmot or tfbert.compression), or "
            "subclass tfbert.compression.PruningSchedule."
        )
    raise ValueError(
        "`pruning_schedule` must be a tfbert.compression.PruningSchedule "
        "(ConstantSparsity, PolynomialDecay) or tfmot's ConstantSparsity/PolynomialDecay; "
        f"received {schedule!r}."
    )
