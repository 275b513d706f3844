"""Extractive question answering: start and end logits over the pieces."""

import keras
from keras import ops

from tfbert.models.bert.bert_backbone import BertBackbone
from tfbert.models.bert.bert_task import (
    BackboneModel,
    backbone_inputs,
    check_backbone,
    head_dense,
)


@keras.saving.register_keras_serializable(package="tfbert")
class BertQuestionAnswerer(BackboneModel):
    """Span start/end scores from a `BertBackbone`, as BERT does on SQuAD.

    Inputs are windows of `[CLS] question [SEP] context [SEP]` from
    `tfbert.text.prepare_qa_features`; outputs are float32
    `{"start_logits", "end_logits"}`, each (B, T), with padding pushed to
    -1e9. Labels are piece positions `{"start_logits": (B,), "end_logits":
    (B,)}` (0, the [CLS] position, when the window holds no answer);
    `compile()` without a loss uses cross-entropy on both. Decode spans with
    `tfbert.text.decode_answers` and score with `squad_scores`.

    Args:
        backbone: `BertBackbone`.
    """

    def __init__(self, backbone: BertBackbone, **kwargs):
        check_backbone(backbone)
        # === Layers ===
        self.backbone = backbone
        self.span_dense = head_dense(backbone, 2, "span_logits")

        # === Functional model ===
        inputs = backbone_inputs()
        logits = ops.cast(self.span_dense(backbone(inputs)["sequence_output"]), "float32")
        padding = ops.cast(1 - inputs["padding_mask"], "float32") * -1e9
        outputs = {
            "start_logits": logits[..., 0] + padding,
            "end_logits": logits[..., 1] + padding,
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def compile(self, optimizer="adam", loss="auto", **kwargs):
        """Keras compile; the "auto" loss is cross-entropy on start and end positions."""
        if loss == "auto":
            loss = {
                "start_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                "end_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            }
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
