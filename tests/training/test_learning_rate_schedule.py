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


def test_inverse_square_root_warmup_peaks_then_decays_as_one_over_sqrt():
    from tfbert.training import WarmupInverseSqrtDecay

    schedule = WarmupInverseSqrtDecay(1e-3, warmup_steps=100)
    rates = [float(schedule(step)) for step in (0, 50, 100, 400, 10_000)]
    # Step 0 counts as step 1: training starts with a small, non-zero rate.
    np.testing.assert_allclose(rates, [1e-5, 5e-4, 1e-3, 5e-4, 1e-4], rtol=1e-6)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert restored.get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupInverseSqrtDecay(1e-3, warmup_steps=0)


def test_per_update_schedule_counts_optimizer_updates_not_micro_batches():
    from tfbert.training import PerUpdateSchedule

    inner = WarmupPolynomialDecay(1.0, warmup_steps=2, total_steps=10)
    schedule = PerUpdateSchedule(inner, accumulation_steps=4)
    # Keras evaluates the rate at micro-batch 4k+3, when update k is applied.
    for update in range(6):
        assert float(schedule(4 * update + 3)) == pytest.approx(float(inner(update)))
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert float(restored(11)) == pytest.approx(float(inner(2)))
