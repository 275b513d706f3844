"""Accuracy over the real tokens of padded target sequences."""

import keras

from tfbert.models.transformer.label_smoothed_cross_entropy import token_weights


@keras.saving.register_keras_serializable(package="tfbert")
class TokenAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Share of real (non-padding) target tokens whose argmax logit is the label.

    Args:
        ignore_token_id: int, default 0. The padding label, not counted.
    """

    def __init__(self, ignore_token_id: int = 0, name: str = "token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_token_id = ignore_token_id

    def update_state(self, y_true, y_pred, sample_weight=None):
        weights = token_weights(y_true, self.ignore_token_id, sample_weight)
        return super().update_state(y_true, y_pred, sample_weight=weights)

    def get_config(self):
        return {**super().get_config(), "ignore_token_id": self.ignore_token_id}
