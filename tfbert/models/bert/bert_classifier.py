"""Sequence classification: a pooled vector (BERT's [CLS] or the token mean), dropout, dense."""

import keras
import tensorflow as tf  # string tensors (raw text into Keras data adapters) are TensorFlow-only
from keras import ops

from tfbert.models.bert.bert_backbone import BertBackbone
from tfbert.models.bert.bert_task import (
    BackboneModel,
    backbone_inputs,
    check_backbone,
    head_dense,
)
from tfbert.models.bert.vocabulary_check import check_vocabulary


@keras.saving.register_keras_serializable(package="tfbert")
class BertClassifier(BackboneModel):
    """Classifies single texts or text pairs from a `BertBackbone`.

    Inputs are the tokenizer's dict (`token_ids`, `segment_ids`,
    `padding_mask`; pairs are packed `[CLS] a [SEP] b [SEP]` by the tokenizer),
    outputs float32 logits (B, num_classes). The backbone's last block runs at
    [CLS] only, the one row the classifier reads.

    `compile()` without a loss uses sparse categorical cross-entropy on the
    logits and accuracy, so integer labels train with plain `fit`.

    Args:
        backbone: `BertBackbone`, e.g. `BertBackbone.from_checkpoint(folder)`.
        num_classes: int.
        dropout: float, default 0.1. Dropout on the pooled vector.
        pooling: "cls" (default) for BERT's pooler on [CLS], "mean" for the
            mean of the final hidden states over real tokens, the pooling
            sentence-embedding checkpoints (all-MiniLM-L6-v2, ...) are
            trained with.

    Example:
        classifier = BertClassifier(BertBackbone.from_checkpoint(folder), 2)
        classifier.compile(optimizer=keras.optimizers.AdamW(5e-5))
        classifier.fit(tokenizer(texts), labels, epochs=2)
    """

    CONFIG_ARGS = ("num_classes", "dropout", "pooling")

    def __init__(
        self,
        backbone: BertBackbone,
        num_classes: int,
        dropout: float = 0.1,
        pooling: str = "cls",
        **kwargs,
    ):
        check_backbone(backbone)
        if pooling not in ("cls", "mean"):
            raise ValueError(f"`pooling` must be 'cls' or 'mean'; received {pooling!r}.")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2; received {num_classes!r}.")
        # === Layers ===
        self.backbone = backbone
        self.classifier_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="classifier_dropout"
        )
        self.logits_dense = head_dense(backbone, num_classes, "logits")

        # === Functional model ===
        inputs = backbone_inputs()
        if pooling == "cls":
            cls_position = ops.zeros_like(inputs["token_ids"][:, :1])
            cls_hidden = backbone.encode_positions(inputs, cls_position)[:, 0, :]
            pooled = backbone.pooler(cls_hidden)
        else:
            sequence = backbone(inputs)["sequence_output"]
            mask = ops.cast(inputs["padding_mask"], sequence.dtype)[:, :, None]
            pooled = ops.sum(sequence * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1)
        logits = self.logits_dense(self.classifier_dropout(pooled))
        super().__init__(inputs=inputs, outputs=ops.cast(logits, "float32"), **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.dropout = dropout
        self.pooling = pooling

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """Keras compile; "auto" loss/metrics are cross-entropy on logits and accuracy."""
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)


@keras.saving.register_keras_serializable(package="tfbert")
class TextClassifier(keras.Model):
    """Raw strings in, predictions out: a `BertTokenizer` in front of a `BertClassifier`.

    `predict(["raw text", ...])` (or `predict({"texts": [...], "pairs": [...]})`
    for text pairs) returns `{"logits", "probabilities", "label"}`;
    `predict_labels` returns label names. Tokenization is graph ops, so the
    whole model also exports as one SavedModel that takes strings.

    Args:
        tokenizer: `tfbert.text.BertTokenizer`; its vocabulary size must be
            the classifier's embedding size (else `ValueError`).
        classifier: `BertClassifier` (trained on that tokenizer's ids).
        label_names: optional list of `num_classes` names.

    Example:
        model = TextClassifier(tokenizer, classifier, ["negative", "positive"])
        model.predict_labels(["a gem of a film", "two hours I want back"])
    """

    def __init__(self, tokenizer, classifier: BertClassifier, label_names=None, **kwargs):
        super().__init__(**kwargs)
        if label_names is not None and len(label_names) != classifier.num_classes:
            raise ValueError(
                f"`label_names` has {len(label_names)} names for a classifier of "
                f"{classifier.num_classes} classes."
            )
        check_vocabulary(tokenizer, classifier)
        self.tokenizer = tokenizer
        self.classifier = classifier
        self.label_names = None if label_names is None else [str(n) for n in label_names]
        self.built = True  # both parts are built; this model adds no weights

    def call(self, inputs):
        if isinstance(inputs, dict):
            texts, pairs = inputs["texts"], inputs.get("pairs")
        else:
            texts, pairs = inputs, None
        logits = self.classifier(self.tokenizer(texts, pairs))
        return {
            "logits": logits,
            "probabilities": ops.softmax(logits, axis=-1),
            "label": ops.cast(ops.argmax(logits, axis=-1), "int32"),
        }

    @staticmethod
    def _as_string_tensors(x):
        """Python lists of str become string tensors, which Keras' data adapters take."""
        if isinstance(x, dict):
            return {key: TextClassifier._as_string_tensors(value) for key, value in x.items()}
        if isinstance(x, (list, tuple)) and all(isinstance(t, (str, bytes)) for t in x):
            return tf.constant([t.encode("utf-8") if isinstance(t, str) else t for t in x])
        return x

    def predict(self, x, *args, **kwargs):
        return super().predict(self._as_string_tensors(x), *args, **kwargs)

    def predict_labels(self, texts, pairs=None, batch_size: int = 64):
        """Label names (or class indices without `label_names`) of raw strings."""
        inputs = texts if pairs is None else {"texts": texts, "pairs": pairs}
        labels = self.predict(inputs, batch_size=batch_size, verbose=0)["label"]
        if self.label_names is None:
            return [int(label) for label in labels]
        return [self.label_names[int(label)] for label in labels]

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "tokenizer": keras.layers.serialize(self.tokenizer),
            "classifier": keras.layers.serialize(self.classifier),
            "label_names": self.label_names,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.layers.deserialize(config["tokenizer"])
        config["classifier"] = keras.layers.deserialize(config["classifier"])
        return cls(**config)
