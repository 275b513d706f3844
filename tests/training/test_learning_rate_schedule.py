import keras
import numpy as np
import pytest

from tfbert.training import WarmupPolynomialDecay


def test_linear_warmup_then_linear_decay():
    schedule = WarmupPolynomialDecay(1e-3, warmup_steps=10, total_steps=110)
    rates = [float(schedule(step)) for step in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(rates, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)


def test_power_and_end_rate_and_serialization():
    schedule = WarmupPolynomialDecay(1.0, 0, 100, end_learning_rate=0.1, power=2.0)
    np.testing.assert_allclose(float(schedule(50)), 0.9 * 0.25 + 0.1, rtol=1e-6)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert restored.get_config() == schedule.get_config()


def test_bad_steps_raise():
    with pytest.raises(ValueError, match="warmup_steps=20, total_steps=10"):
        WarmupPolynomialDecay(1e-3, warmup_steps=20, total_steps=10)
