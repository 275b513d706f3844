"""Token classification (named entities): a label for every word piece."""

import keras
from keras import ops

from tfbert.models.bert.bert_backbone import BertBackbone
from tfbert.models.bert.bert_task import (
    BackboneModel,
    backbone_inputs,
    check_backbone,
    head_dense,
)

# Label of the positions the loss skips: every piece but a word's first, and padding.
IGNORE_LABEL = -100


@keras.saving.register_keras_serializable(package="tfbert")
class BertTokenClassifier(BackboneModel):
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

    CONFIG_ARGS = ("num_labels", "dropout")

    def __init__(self, backbone: BertBackbone, num_labels: int, dropout: float = 0.1, **kwargs):
        check_backbone(backbone)
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"`num_labels` must be an integer >= 2; received {num_labels!r}.")
        # === Layers ===
        self.backbone = backbone
        self.token_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="token_dropout"
        )
        self.logits_dense = head_dense(backbone, num_labels, "logits")

        # === Functional model ===
        inputs = backbone_inputs()
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
