"""Token classifiers and question answerers export like classifiers: every
runtime gives the Keras model's outputs."""

import numpy as np
import pytest

from tfbert.export import litert, onnx, run_litert, run_onnx, saved_model, verify_saved_model
from tfbert.export.verify import run_saved_model
from tfbert.models import BertBackbone, BertQuestionAnswerer, BertTokenClassifier
from tfbert.text import BertTokenizer

# One worker builds this module's module-scoped fixtures (see tests/conftest.py).
pytestmark = pytest.mark.xdist_group("test_task_models")


@pytest.fixture(scope="module", params=["token_classifier", "question_answerer"])
def task(request, vocabulary_file, rotten_tomatoes):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=32)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    if request.param == "token_classifier":
        model, names = BertTokenClassifier(backbone, num_labels=5), ["logits"]
    else:
        model, names = BertQuestionAnswerer(backbone), ["start_logits", "end_logits"]
    texts = [text for text, _ in rotten_tomatoes[:6]]
    return model, tokenizer, names, texts


def expected_outputs(model, inputs, names):
    outputs = model(inputs, training=False)
    outputs = outputs if isinstance(outputs, dict) else {"logits": outputs}
    return {name: np.asarray(outputs[name]) for name in names}


def test_saved_model_onnx_and_litert_match_keras(tmp_path, task):
    model, tokenizer, names, texts = task
    questions, contexts = texts[:3], texts[3:]
    inputs = {k: v.numpy() for k, v in tokenizer(questions, contexts).items()}
    expected = expected_outputs(model, inputs, names)

    path = saved_model(model, str(tmp_path / "served"), tokenizer=tokenizer, pairs=True)
    [served] = run_saved_model(
        path, [("serving_default", {"text": questions, "text_pair": contexts})]
    )
    for name in names:
        np.testing.assert_allclose(served[name], expected[name], atol=1e-5)
    assert verify_saved_model(path, model, texts, tokenizer=tokenizer)["max_abs_diff"] < 1e-5

    got = run_onnx(onnx(model, str(tmp_path / "model.onnx")), inputs)
    for name in names:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4)

    path = litert(
        model,
        str(tmp_path / "model.tflite"),
        include_tokenizer=True,
        tokenizer=tokenizer,
        sequence_length=32,
        pairs=True,
    )
    got = run_litert(path, {"text": questions, "text_pair": contexts})
    for name in names:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4)
