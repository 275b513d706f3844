import keras
import numpy as np
import pytest

from tests.models.test_bert_backbone import TINY
from tests.test_case import run_model_test
from tfbert.models import BertBackbone, BertTokenClassifier
from tfbert.text import (
    BertTokenizer,
    align_word_labels,
    entity_scores,
    minilm_checkpoint_dir,
    wnut_ner,
    word_predictions,
)


def test_minilm_learns_real_entities_and_reloads(tmp_path):
    """Fits 32 real tweets with entities until it tags them (held-out F1 is a benchmark)."""
    sentences = [s for s in wnut_ner() if any(tag != "O" for tag in s[1])][:32]
    words, tags = [s for s, _ in sentences], [t for _, t in sentences]
    names = sorted({tag for sentence in tags for tag in sentence})
    folder = minilm_checkpoint_dir()
    tokenizer = BertTokenizer.from_checkpoint(folder, sequence_length=40)
    x, y, word_ids = align_word_labels(tokenizer, words, tags, names)
    model = BertTokenClassifier(BertBackbone.from_checkpoint(folder), len(names))
    model.compile(optimizer=keras.optimizers.Adam(3e-4))
    history = model.fit(x, y, batch_size=8, epochs=10, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    logits = model.predict(x, verbose=0)
    assert logits.shape == (32, 40, len(names)) and logits.dtype == np.float32
    scores = entity_scores(tags, word_predictions(logits, word_ids, words, names))
    assert scores["f1"] > 0.45, scores  # all-"O" scores 0

    path = tmp_path / "ner.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), logits, atol=1e-5)


def test_model_harness(real_inputs):
    def build(dtype=None):
        return BertTokenClassifier(BertBackbone(**TINY, dtype=dtype), num_labels=5, dropout=0.0)

    # A label on every real piece, -100 (ignored) on padding.
    labels = np.where(real_inputs["padding_mask"] == 1, real_inputs["token_ids"] % 5, -100)
    run_model_test(
        build,
        real_inputs,
        labels,
        float32_outputs=(0,),
        untrained_weights=("pooler/kernel", "pooler/bias"),
    )


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="`num_labels` must be an integer >= 2"):
        BertTokenClassifier(BertBackbone.from_preset("bert_tiny"), 1)
