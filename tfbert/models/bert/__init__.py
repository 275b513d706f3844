from tfbert.models.bert.bert_backbone import BertBackbone
from tfbert.models.bert.bert_classifier import BertClassifier, TextClassifier
from tfbert.models.bert.bert_presets import BERT_PRESETS
from tfbert.models.bert.bert_pretrainer import BertPretrainer

__all__ = ["BERT_PRESETS", "BertBackbone", "BertClassifier", "BertPretrainer", "TextClassifier"]
