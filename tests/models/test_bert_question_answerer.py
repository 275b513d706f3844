import keras
import numpy as np
import pytest

from tests.models.test_bert_backbone import TINY
from tests.test_case import run_model_test
from tfbert.models import BertBackbone, BertQuestionAnswerer
from tfbert.text import (
    BertTokenizer,
    bbc_news,
    decode_answers,
    minilm_checkpoint_dir,
    prepare_qa_features,
    squad_scores,
)


def _continuation_questions(count):
    """Real BBC paragraphs; the question quotes 4 words, the answer is the next 3."""
    questions, contexts, answers = [], [], []
    for text, _ in bbc_news()[0]:
        for paragraph in text.split("\n"):
            words = paragraph.split()
            if 20 <= len(words) <= 40 and len(contexts) < count:
                at = 8 + len(contexts) % 8
                questions.append("what follows " + " ".join(words[at - 4 : at]) + "?")
                answer = " ".join(words[at : at + 3])
                contexts.append(paragraph)
                answers.append((answer, paragraph.index(answer)))
    return questions, contexts, answers


def test_minilm_learns_to_extract_spans_and_reloads(tmp_path):
    questions, contexts, answers = _continuation_questions(48)
    folder = minilm_checkpoint_dir()
    tokenizer = BertTokenizer.from_checkpoint(folder, sequence_length=80)
    features = prepare_qa_features(tokenizer, questions, contexts, answers)
    model = BertQuestionAnswerer(BertBackbone.from_checkpoint(folder))
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    history = model.fit(features.x, features.y, batch_size=8, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]
    out = model.predict(features.x, verbose=0)
    padding = features.x["padding_mask"] == 0
    assert np.all(out["start_logits"][padding] < -1e8)
    predicted = decode_answers(out["start_logits"], out["end_logits"], features, contexts)
    scores = squad_scores(predicted, [[answer] for answer, _ in answers])
    assert scores["exact_match"] > 60 and scores["f1"] > 70, scores

    path = tmp_path / "qa.keras"
    model.save(path)
    again = keras.saving.load_model(path).predict(features.x, verbose=0)
    np.testing.assert_allclose(again["end_logits"], out["end_logits"], atol=1e-4)


def test_model_harness(real_inputs):
    def build(dtype=None):
        return BertQuestionAnswerer(BertBackbone(**TINY, dtype=dtype))

    lengths = real_inputs["padding_mask"].sum(axis=1)
    spans = {"start_logits": lengths // 3, "end_logits": lengths // 2}
    run_model_test(
        build,
        real_inputs,
        spans,
        float32_outputs=(0, 1),
        untrained_weights=("pooler/kernel", "pooler/bias"),
    )


def test_bad_backbone_raises():
    with pytest.raises(ValueError, match="`backbone` must be a tfbert.models.BertBackbone"):
        BertQuestionAnswerer(None)
