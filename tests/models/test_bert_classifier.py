import os

import keras
import numpy as np
import pytest

from tests.models.test_bert_backbone import TINY
from tests.test_case import run_model_test
from tfbert.models import BertBackbone, BertClassifier, TextClassifier
from tfbert.text import BertTokenizer


@pytest.mark.xdist_group("fine_tuned_minilm")
def test_fine_tuned_minilm_learns_rotten_tomatoes(fine_tuned_minilm):
    """One epoch on 1,024 real sentences lifts held-out accuracy far above chance."""
    classifier, _, x, y, _, _ = fine_tuned_minilm
    loss, accuracy = classifier.evaluate(x, y, batch_size=64, verbose=0)
    assert accuracy > 0.70, accuracy  # chance is 0.5; the benchmark trains fully
    predicted = classifier.predict(x, batch_size=64, verbose=0).argmax(-1)
    assert np.isclose(np.mean(predicted == y), accuracy)


def test_pairs_saving_and_raw_text_predictions(tmp_path, vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=24)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    classifier = BertClassifier(backbone, num_classes=3, dropout=0.0, pooling="mean")
    classifier.compile(optimizer="adam")
    questions, answers = ["is it good?", "who directed it?"], ["yes, very.", "nobody knows."]
    pairs = tokenizer(questions, answers)
    classifier.fit(pairs, np.array([0, 2]), epochs=2, verbose=0)
    logits = classifier.predict(pairs, verbose=0)
    assert logits.shape == (2, 3) and logits.dtype == np.float32

    path = tmp_path / "classifier.keras"
    classifier.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(pairs, verbose=0), logits, atol=1e-6)
    # The optimizer comes back with its state, so training resumes where it stopped.
    assert int(restored.optimizer.iterations) == int(classifier.optimizer.iterations) == 2

    model = TextClassifier(tokenizer, classifier, ["agree", "neutral", "disagree"])
    out = model.predict({"texts": questions, "pairs": answers}, verbose=0)
    np.testing.assert_allclose(out["logits"], logits, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-6)
    names = model.predict_labels(questions, answers)
    assert names == [["agree", "neutral", "disagree"][i] for i in logits.argmax(-1)]
    singles = model.predict(["a raw sentence", "another one", "and a third"], verbose=0)
    assert singles["label"].shape == (3,)

    path = os.path.join(tmp_path, "text_classifier.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.predict_labels(questions, answers) == names
    again = reloaded.predict({"texts": questions, "pairs": answers}, verbose=0)
    np.testing.assert_allclose(again["probabilities"], out["probabilities"], atol=1e-6)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_model_harness(real_inputs, pooling):
    def build(dtype=None):
        backbone = BertBackbone(**TINY, dtype=dtype)
        return BertClassifier(backbone, num_classes=3, dropout=0.0, pooling=pooling)

    untrained = () if pooling == "cls" else ("pooler/kernel", "pooler/bias")
    labels = np.arange(8) % 3
    run_model_test(build, real_inputs, labels, float32_outputs=(0,), untrained_weights=untrained)


def test_bad_arguments_raise_clear_errors(vocabulary_file):
    backbone = BertBackbone.from_preset("bert_tiny")
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 2"):
        BertClassifier(backbone, 1)
    with pytest.raises(ValueError, match="`backbone` must be a tfbert.models.BertBackbone"):
        BertClassifier("minilm", 2)
    with pytest.raises(ValueError, match="`pooling` must be 'cls' or 'mean'"):
        BertClassifier(backbone, 2, pooling="max")
    classifier = BertClassifier(backbone, 2)
    with pytest.raises(ValueError, match="`label_names` has 3 names for a classifier of 2"):
        TextClassifier(BertTokenizer(vocabulary_file), classifier, ["a", "b", "c"])
