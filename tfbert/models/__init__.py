"""Models: the BERT backbone, pretrainer and (later) task and seq2seq models."""

from tfbert.models.bert import (
    BERT_PRESETS,
    BertBackbone,
    BertClassifier,
    BertPretrainer,
    BertQuestionAnswerer,
    BertTokenClassifier,
    TextClassifier,
)

__all__ = [
    "BERT_PRESETS",
    "BertBackbone",
    "BertClassifier",
    "BertPretrainer",
    "BertQuestionAnswerer",
    "BertTokenClassifier",
    "TextClassifier",
]
