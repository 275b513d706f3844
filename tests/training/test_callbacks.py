import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbert.training import (
    AtomicModelCheckpoint,
    TrainingBackup,
    TrainingMonitor,
    save_atomically,
    training_callbacks,
)


def _model():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


@keras.saving.register_keras_serializable(package="tests")
class _Unsaveable(keras.layers.Layer):
    def call(self, x):
        return x

    def get_config(self):
        raise RuntimeError("this layer cannot be saved")


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path):
    path = str(tmp_path / "model.keras")
    model = _model()
    save_atomically(model, path)
    saved = open(path, "rb").read()

    broken = keras.Sequential([keras.Input((4,)), _Unsaveable(), keras.layers.Dense(1)])
    with pytest.raises(RuntimeError, match="cannot be saved"):
        save_atomically(broken, path)
    assert open(path, "rb").read() == saved
    assert os.listdir(tmp_path) == ["model.keras"]  # no staged leftovers
    assert keras.saving.load_model(path).count_params() == model.count_params()


def test_checkpoint_callback_saves_each_epoch(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(32, 4)), np.zeros((32, 1))
    model = _model()
    path = str(tmp_path / "epoch{epoch}.keras")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[AtomicModelCheckpoint(path)])
    assert sorted(os.listdir(tmp_path)) == ["epoch1.keras", "epoch2.keras"]
    restored = keras.saving.load_model(tmp_path / "epoch2.keras")
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0))


def test_nan_loss_stops_with_the_step_and_learning_rate():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.zeros((32, 1), "float32")
    y[20] = np.nan  # a broken label in the third batch of 8
    model = _model()
    monitor = TrainingMonitor(global_batch_size=8)
    with pytest.raises(FloatingPointError) as error:
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[monitor],
        )
    message = str(error.value)
    assert re.search(
        r"became nan at epoch 1, batch 3 \(optimizer step 3, learning rate 0.01\)", message
    ), message
    assert "Lower the learning rate" in message


def test_tensorboard_gets_learning_rate_and_throughput(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(32, 4)), np.zeros((32, 1))
    model = _model()
    callbacks = training_callbacks(str(tmp_path), global_batch_size=8, backup=False)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.01])
    assert all(rate > 0 for rate in history.history["examples_per_second"])
    tags = set()
    for root, _, files in os.walk(tmp_path / "logs"):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                tags.update(value.tag for value in event.summary.value)
    assert {"epoch_loss", "epoch_learning_rate", "epoch_examples_per_second"} <= tags
    assert os.path.exists(tmp_path / "checkpoint.keras")


def test_a_backup_of_another_model_is_refused(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(16, 4)), np.zeros((16, 1))
    backup = str(tmp_path / "backup")
    model = _model()
    model.fit(
        x, y, epochs=1, verbose=0, callbacks=[TrainingBackup(backup, delete_checkpoint=False)]
    )
    assert TrainingBackup.completed_epochs(backup) == 1
    assert TrainingBackup.completed_epochs(str(tmp_path / "none")) == 0

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    other.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="does not fit this model"):
        other.fit(x, y, epochs=2, verbose=0, callbacks=[TrainingBackup(backup)])


class _StopAt(keras.callbacks.Callback):
    """Raises at optimizer step `step`, as a kill would stop the run there."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise KeyboardInterrupt


def _dropout_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


def _shuffled_batches():
    """6 batches of 8, reshuffled every epoch from a fixed seed (a fresh
    object stands for the dataset a restarted process builds)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(48, 4)).astype("float32"), rng.normal(size=(48, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    return dataset.shuffle(48, seed=5, reshuffle_each_iteration=True).batch(8)


def test_a_fit_stopped_inside_an_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    model = _dropout_model()
    history = model.fit(_shuffled_batches(), epochs=3, verbose=0)
    expected = model.get_weights()

    backup = TrainingBackup(str(tmp_path / "backup"), save_freq=4)
    model = _dropout_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(backup.resume(_shuffled_batches()), epochs=3, verbose=0,
                  callbacks=[backup, _StopAt(11)])  # fmt: skip
    latest = TrainingBackup.latest(str(tmp_path / "backup"))
    # Backups after steps 4 and 6 (the epoch's end) and 4 steps later, at 10.
    assert (latest["epoch"], latest["step"], latest["batches"]) == (1, 4, 10)

    backup = TrainingBackup(str(tmp_path / "backup"), save_freq=4)
    model = _dropout_model()
    resumed = model.fit(backup.resume(_shuffled_batches()), epochs=3, verbose=0,
                        callbacks=[backup])  # fmt: skip
    for got, want in zip(model.get_weights(), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    assert resumed.epoch == [1, 2]
    np.testing.assert_allclose(resumed.history["mae"], history.history["mae"][1:], rtol=1e-6)
    assert not os.path.exists(tmp_path / "backup")


def test_backup_settings_and_datasets_it_cannot_resume_are_refused(tmp_path):
    for save_freq in (0, -5, "batch", True, 2.5):
        with pytest.raises(ValueError, match="`save_freq` must be 'epoch' or a positive number"):
            TrainingBackup(str(tmp_path), save_freq=save_freq)
    unknown = _shuffled_batches().filter(lambda x, y: True)
    with pytest.raises(ValueError, match="whose length tf.data does not know"):
        TrainingBackup(str(tmp_path)).resume(unknown)
    (tmp_path / "training_metadata.json").write_text('{"epochs": 3}')
    with pytest.raises(ValueError, match="is not a tfbert training backup record"):
        TrainingBackup.latest(str(tmp_path))
