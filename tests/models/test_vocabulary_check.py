"""One check refuses a tokenizer that does not fit the model, wherever the
two meet: TextClassifier, saved_model, onnx, litert, export_artifacts
(tests/export/ cover the exporters)."""

import keras
import pytest

from tfbert.models import BertBackbone, BertClassifier, BertPretrainer, TextClassifier
from tfbert.models.bert.vocabulary_check import check_vocabulary, model_vocabulary_size
from tfbert.text import BertTokenizer

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "film", "##s"]


def test_text_classifier_refuses_a_tokenizer_of_another_vocabulary(tmp_path, vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=16)
    classifier = BertClassifier(BertBackbone.from_preset("bert_tiny"), 2)
    with pytest.raises(ValueError) as error:
        TextClassifier(BertTokenizer(VOCABULARY), classifier, ["negative", "positive"])
    print(f"{type(error.value).__name__}: {error.value}")
    assert str(error.value) == (
        "The tokenizer has 9 tokens but the model's embedding has 30522: it is not the "
        "tokenizer the model was trained with, and its ids would name other tokens. Pass "
        "the tokenizer built from the vocab.txt the model was trained on (e.g. "
        "BertTokenizer(os.path.join(checkpoint_dir, 'vocab.txt')))."
    )
    # The tokenizer it was built for is accepted, and the saved model loads.
    model = TextClassifier(tokenizer, classifier, ["negative", "positive"])
    model.save(tmp_path / "model.keras")
    assert keras.saving.load_model(tmp_path / "model.keras").tokenizer.vocabulary_size == 30522


def test_every_model_kind_reports_its_embedding_size():
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=len(VOCABULARY))
    classifier = BertClassifier(backbone, 2)
    tokenizer = BertTokenizer(VOCABULARY)
    for model in (backbone, classifier, BertPretrainer(backbone)):
        assert model_vocabulary_size(model) == len(VOCABULARY)
        check_vocabulary(tokenizer, model)
    assert model_vocabulary_size(TextClassifier(tokenizer, classifier)) == len(VOCABULARY)
    assert model_vocabulary_size(keras.Sequential([keras.layers.Dense(2)])) is None
    check_vocabulary(None, classifier)  # nothing to check
    with pytest.raises(ValueError, match="tokenizer has 8 tokens but the model's embedding has 9"):
        check_vocabulary(BertTokenizer(VOCABULARY[:-1]), BertPretrainer(backbone))
