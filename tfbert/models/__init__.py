"""Models: the BERT backbone, pretrainer, task models (classification, entities, QA)."""

from tfbert.models.bert import (
    BERT_PRESETS,
    IGNORE_LABEL,
    BertBackbone,
    BertClassifier,
    BertPretrainer,
    BertQuestionAnswerer,
    BertTokenClassifier,
    TextClassifier,
)
from tfbert.models.distributed_trainer import DistributedTrainer, MultiWorkerTraining

__all__ = [
    "BERT_PRESETS",
    "IGNORE_LABEL",
    "BertBackbone",
    "BertClassifier",
    "BertPretrainer",
    "BertQuestionAnswerer",
    "BertTokenClassifier",
    "DistributedTrainer",
    "MultiWorkerTraining",
    "TextClassifier",
]
