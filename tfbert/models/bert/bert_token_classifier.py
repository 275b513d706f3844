"""Token classification (named entities): a label for every word piece."""

import keras
from keras import ops

from tfbert.models.bert.bert_backbone import INPUT_NAMES, BertBackbone
from tfbert.text.word_labels import IGNORE_LABEL


@keras.saving.register_keras_serializable(package="tfbert")
class BertTokenClassifier(keras.Model):
    """Per-piece labels from a `BertBackbone`'s sequence output.

    Outputs float32 logits (B, T, num_labels). Train on
    `tfbert.text.align_word_labels` output: labels sit on each word's first
    piece and every other position holds `IGNORE_LABEL` (-100), which the
    default loss (`compile()` without a loss) ignores. Score with
    `tfbert.text.word_predictions` and `entity_scores`.

    Args:
        backbone: `BertBackbone`.
        num_labels: int, e.g. 21 for 10 entity types in BIO tags.
        dropout: float, default 0.1.
    """

    def __init__(self, backbone: BertBackbone, num_labels: int, dropout: float = 0.1, **kwargs):
        if not isinstance(backbone, BertBackbone):
            raise ValueError(
                "`backbone` must be a tfbert.models.BertBackbone; received "
                f"{type(backbone).__name__}."
            )
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"`num_labels` must be an integer >= 2; received {num_labels!r}.")
        # === Layers ===
        self.backbone = backbone
        self.token_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="token_dropout"
        )
        self.logits_dense = keras.layers.Dense(
            num_labels,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=backbone.initializer_range
            ),
            dtype=backbone.dtype_policy,
            name="logits",
        )

        # === Functional model ===
        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES
        }
        sequence = backbone(inputs)["sequence_output"]
        logits = self.logits_dense(self.token_dropout(sequence))
        super().__init__(inputs=inputs, outputs=ops.cast(logits, "float32"), **kwargs)

        # === Config ===
        self.num_labels = num_labels
        self.dropout = dropout

    def compile(self, optimizer="adam", loss="auto", **kwargs):
        """Keras compile; the "auto" loss is cross-entropy skipping `IGNORE_LABEL`."""
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, ignore_class=IGNORE_LABEL
            )
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            "num_labels": self.num_labels,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)
