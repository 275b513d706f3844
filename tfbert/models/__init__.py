"""Models: BERT (backbone, pretrainer, task models), the seq2seq Transformer, the causal LM."""

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
from tfbert.models.transformer import (
    CAUSAL_LM_PRESETS,
    TRANSFORMER_PRESETS,
    BeamSampler,
    CausalLanguageModel,
    LabelSmoothedCrossEntropy,
    TokenAccuracy,
    Transformer,
    Translator,
)

__all__ = [
    "BERT_PRESETS",
    "CAUSAL_LM_PRESETS",
    "TRANSFORMER_PRESETS",
    "BeamSampler",
    "CausalLanguageModel",
    "LabelSmoothedCrossEntropy",
    "TokenAccuracy",
    "Transformer",
    "Translator",
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
