"""BERT pretraining: masked language modelling + next-sentence prediction."""

import keras
import numpy as np
from keras import ops

# Keras scales each replica's loss by 1 / num_replicas so that summing the
# replicas' gradients gives the global mean; a model computing its own loss
# must do the same. Pinned keras (<3.16) keeps this private helper in place.
from keras.src.losses.loss import scale_loss_for_distribution

from tfbert.layers.masked_lm_head import MaskedLMHead
from tfbert.models.bert.bert_backbone import POOLER_WEIGHTS, BertBackbone
from tfbert.models.bert.bert_checkpoint import (
    HEAD_TABLE,
    backbone_config,
    backbone_table,
    export_tensors,
    hf_config,
    load_weights,
    read_checkpoint,
    write_checkpoint,
)
from tfbert.models.bert.bert_task import (
    BackboneModel,
    backbone_inputs,
    check_backbone,
    head_dense,
)
from tfbert.models.distributed_trainer import sum_over_replicas

_BATCH_FORMAT = (
    "x={'token_ids', 'segment_ids', 'padding_mask', 'mask_positions'}, "
    "y={'mlm_labels': (batch, max_predictions), 'nsp_labels': (batch,)}, "
    "optional sample_weight={'mlm_labels': (batch, max_predictions)}"
)


@keras.saving.register_keras_serializable(package="tfbert")
class BertPretrainer(BackboneModel):
    """A `BertBackbone` with masked-LM and next-sentence heads and their losses.

    Train it with plain `compile(optimizer=...)` and `fit`. The losses are
    built in: masked-LM cross-entropy averaged over the real predictions
    (weight 1 in `sample_weight["mlm_labels"]`; every prediction when no
    weights are given) plus next-sentence cross-entropy. `fit`/`evaluate`
    report `loss`, `mlm_loss`, `nsp_loss`, `mlm_accuracy` and `nsp_accuracy`.

    Batch format:
        x = {"token_ids", "segment_ids", "padding_mask": (B, T) int32,
             "mask_positions": (B, P) int32}
        y = {"mlm_labels": (B, P) int32, "nsp_labels": (B,) int32
             (0 = segment B follows segment A, 1 = random segment, as in
             google-research/bert and Hugging Face)}
        sample_weight = {"mlm_labels": (B, P) float, 0 for padding predictions}

    Args:
        backbone: `BertBackbone`.
        next_sentence_prediction: bool, default True. Without it the model
            has no NSP head and `y` needs only `mlm_labels` (RoBERTa-style).

    Example:
        pretrainer = BertPretrainer(BertBackbone.from_preset("bert_tiny"))
        pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-4))
        pretrainer.fit(dataset, epochs=3)
    """

    CONFIG_ARGS = ("next_sentence_prediction",)

    def __init__(self, backbone: BertBackbone, next_sentence_prediction: bool = True, **kwargs):
        check_backbone(backbone)
        # === Layers ===
        self.backbone = backbone
        self.masked_lm_head = MaskedLMHead(
            token_embedding=backbone.token_embedding,
            activation=backbone.activation,
            layer_norm_epsilon=backbone.layer_norm_epsilon,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=backbone.initializer_range
            ),
            dtype=backbone.dtype_policy,
            name="masked_lm_head",
        )
        if next_sentence_prediction:
            self.next_sentence_head = head_dense(backbone, 2, "next_sentence_head")

        # === Functional model ===
        inputs = backbone_inputs("mask_positions")
        # The heads read only [CLS] (NSP) and the masked positions, so the
        # last block computes only those rows.
        positions = inputs["mask_positions"]
        if next_sentence_prediction:
            positions = ops.concatenate([ops.zeros_like(positions[:, :1]), positions], 1)
        hidden = backbone.encode_positions(inputs, positions)  # (B, [1+]P, D)
        if next_sentence_prediction:
            cls_hidden, hidden = hidden[:, 0, :], hidden[:, 1:, :]
        outputs = {"mlm_logits": self.masked_lm_head(hidden)}
        if next_sentence_prediction:
            nsp_logits = self.next_sentence_head(backbone.pooler(cls_hidden))
            outputs["nsp_logits"] = ops.cast(nsp_logits, "float32")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.next_sentence_prediction = next_sentence_prediction

        # === Metrics (tracked, reset each epoch by fit/evaluate) ===
        self.mlm_loss_tracker = keras.metrics.Mean(name="mlm_loss")
        self.mlm_accuracy = keras.metrics.SparseCategoricalAccuracy(name="mlm_accuracy")
        if next_sentence_prediction:
            self.nsp_loss_tracker = keras.metrics.Mean(name="nsp_loss")
            self.nsp_accuracy = keras.metrics.SparseCategoricalAccuracy(name="nsp_accuracy")

    def _checkpoint_table(self):
        heads = [
            row for row in HEAD_TABLE if self.next_sentence_prediction or "next" not in row[0]
        ]
        return backbone_table(self.backbone.num_layers), heads

    @classmethod
    def from_checkpoint(cls, path, next_sentence_prediction: bool = True, **overrides):
        """A pretrainer with backbone and head weights from a BERT checkpoint.

        Reads what `BertBackbone.from_checkpoint` reads, plus the masked-LM
        head (`cls.predictions.*`) and next-sentence head
        (`cls.seq_relationship.*`) of BertForPreTraining-style checkpoints.
        Heads (and pooler) the checkpoint lacks, as in a plain BertModel,
        keep their random initialisation, with a warning.
        """
        config, tensors = read_checkpoint(path)
        backbone = BertBackbone(**{**backbone_config(config), **overrides})
        pretrainer = cls(backbone, next_sentence_prediction=next_sentence_prediction)
        decoder = tensors.get("cls.predictions.decoder.weight")
        embedding = tensors.get("embeddings.word_embeddings.weight")
        if (
            decoder is not None
            and embedding is not None
            and not np.array_equal(decoder, embedding)
        ):
            raise ValueError(
                "The checkpoint's masked-LM decoder is not tied to the word embeddings; "
                "tfbert's BertPretrainer ties them, as BERT does."
            )
        if not next_sentence_prediction:
            tensors = {
                k: v for k, v in tensors.items() if not k.startswith("cls.seq_relationship")
            }
        body, heads = pretrainer._checkpoint_table()
        load_weights(
            pretrainer,
            tensors,
            body + heads,
            optional=(*POOLER_WEIGHTS, *(path for path, _, _ in heads)),
            source=f"checkpoint {path!r}",
        )
        return pretrainer

    def save_checkpoint(self, directory, tokenizer=None) -> str:
        """Writes a Hugging Face `BertForPreTraining` folder (`BertForMaskedLM`
        without next-sentence prediction); see `BertBackbone.save_checkpoint`."""
        body, heads = self._checkpoint_table()
        tensors = {
            **export_tensors(self, body, prefix="bert."),
            **export_tensors(self, heads),
        }
        architecture = "BertForPreTraining" if self.next_sentence_prediction else "BertForMaskedLM"
        return write_checkpoint(
            directory, hf_config(self.backbone, architecture), tensors, tokenizer
        )

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        if loss is not None or metrics is not None or kwargs.get("weighted_metrics"):
            raise ValueError(
                "BertPretrainer computes its masked-LM and next-sentence losses "
                "and metrics itself; call compile(optimizer=...) without "
                "`loss`, `metrics` or `weighted_metrics`."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # The losses and metrics are built in; compile() refuses them.
        for key in ("loss", "loss_weights", "metrics", "weighted_metrics"):
            config.pop(key, None)
        super().compile_from_config(config)

    @staticmethod
    def _complete_sample_weight(y, kwargs):
        """Lets in-memory data pass only MLM weights, as datasets may.

        Keras' array adapter wants one weight array per target; NSP examples
        all weigh 1, so that array is filled in here.
        """
        weights = kwargs.get("sample_weight")
        if isinstance(y, dict) and isinstance(weights, dict):
            if "nsp_labels" in y and "nsp_labels" not in weights:
                count = np.shape(y["nsp_labels"])[0]
                kwargs["sample_weight"] = {**weights, "nsp_labels": np.ones(count, "float32")}
        return kwargs

    def fit(self, x=None, y=None, *args, **kwargs):
        return super().fit(x, y, *args, **self._complete_sample_weight(y, kwargs))

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return super().evaluate(x, y, *args, **self._complete_sample_weight(y, kwargs))

    def _unpack_targets(self, y, sample_weight):
        required = ["mlm_labels"] + (["nsp_labels"] if self.next_sentence_prediction else [])
        if not isinstance(y, dict) or any(key not in y for key in required):
            received = sorted(y) if isinstance(y, dict) else type(y).__name__
            raise ValueError(
                f"BertPretrainer needs targets y with keys {required}; received "
                f"{received}. Expected batch format: {_BATCH_FORMAT}."
            )
        mlm_labels = y["mlm_labels"]
        if sample_weight is None:
            mlm_weights = ops.ones(ops.shape(mlm_labels), "float32")
        elif isinstance(sample_weight, dict) and set(sample_weight) <= {
            "mlm_labels",
            "nsp_labels",
        }:
            mlm_weights = sample_weight.get("mlm_labels")
            if mlm_weights is None:
                mlm_weights = ops.ones(ops.shape(mlm_labels), "float32")
            mlm_weights = ops.cast(mlm_weights, "float32")
        else:
            raise ValueError(
                "BertPretrainer takes sample_weight as a dict "
                "{'mlm_labels': (batch, max_predictions)}; received "
                f"{type(sample_weight).__name__}. Expected batch format: "
                f"{_BATCH_FORMAT}."
            )
        return mlm_labels, mlm_weights, y.get("nsp_labels")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        mlm_labels, mlm_weights, nsp_labels = self._unpack_targets(y, sample_weight)
        # (B, P) per-prediction losses, averaged over the real predictions of
        # all replicas: scale_loss_for_distribution below divides by their
        # number, and summing the replicas' gradients gives the global mean.
        mlm_losses = ops.sparse_categorical_crossentropy(
            mlm_labels, y_pred["mlm_logits"], from_logits=True
        )
        predictions, replicas = sum_over_replicas(ops.sum(mlm_weights))
        loss = ops.divide_no_nan(ops.sum(mlm_losses * mlm_weights) * replicas, predictions)
        self.mlm_loss_tracker.update_state(mlm_losses, sample_weight=mlm_weights)
        if self.next_sentence_prediction:
            nsp_losses = ops.sparse_categorical_crossentropy(
                nsp_labels, y_pred["nsp_logits"], from_logits=True
            )
            loss = loss + ops.mean(nsp_losses)
            self.nsp_loss_tracker.update_state(nsp_losses)
        loss = scale_loss_for_distribution(loss)
        for extra in self.losses:  # regularizers, add_loss()
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        mlm_labels, mlm_weights, nsp_labels = self._unpack_targets(y, sample_weight)
        self.mlm_accuracy.update_state(mlm_labels, y_pred["mlm_logits"], sample_weight=mlm_weights)
        if self.next_sentence_prediction:
            self.nsp_accuracy.update_state(nsp_labels, y_pred["nsp_logits"])
        return self.get_metrics_result()
