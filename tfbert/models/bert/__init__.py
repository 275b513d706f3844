from tfbert.models.bert.bert_backbone import BertBackbone
from tfbert.models.bert.bert_classifier import BertClassifier, TextClassifier
from tfbert.models.bert.bert_presets import BERT_PRESETS
from tfbert.models.bert.bert_pretrainer import BertPretrainer
from tfbert.models.bert.bert_question_answerer import BertQuestionAnswerer
from tfbert.models.bert.bert_token_classifier import IGNORE_LABEL, BertTokenClassifier

__all__ = [
    "BERT_PRESETS",
    "IGNORE_LABEL",
    "BertBackbone",
    "BertClassifier",
    "BertPretrainer",
    "BertQuestionAnswerer",
    "BertTokenClassifier",
    "TextClassifier",
]
