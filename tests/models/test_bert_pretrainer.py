import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.test_case import assert_all_close, run_model_test
from tfbert.models import BertBackbone, BertPretrainer
from tfbert.text import pretraining_dataset, write_pretraining_text

# One worker builds this module's module-scoped fixtures (see tests/conftest.py).
pytestmark = pytest.mark.xdist_group("test_bert_pretrainer")

SMALL = {
    "vocabulary_size": 30522,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 64,
    "intermediate_dim": 128,
    "max_sequence_length": 64,
}


@pytest.fixture(scope="module")
def real_batch(tokenizer):
    """One pretraining batch (8 x 32, 5 predictions) built from IMDB reviews."""
    from tfbert.text import movie_reviews

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "imdb.txt")
    write_pretraining_text([text for text, _ in movie_reviews("imdb")[:40]], path)
    keras.utils.set_random_seed(7)
    dataset = pretraining_dataset(path, tokenizer, 32, 8, max_predictions=5, seed=7)
    x, y, w = next(iter(dataset))
    return tuple({k: np.array(v) for k, v in part.items()} for part in (x, y, w))


def test_logits_equal_full_backbone_then_heads(real_batch):
    x, _, _ = real_batch
    pretrainer = BertPretrainer(BertBackbone(**SMALL))
    out = pretrainer(x)
    features = pretrainer.backbone({k: x[k] for k in ("token_ids", "segment_ids", "padding_mask")})
    mlm = pretrainer.masked_lm_head(features["sequence_output"], x["mask_positions"])
    nsp = pretrainer.next_sentence_head(features["pooled_output"])
    assert_all_close(out["mlm_logits"], mlm, atol=1e-5)
    assert_all_close(out["nsp_logits"], nsp, atol=1e-5)
    assert tuple(out["mlm_logits"].shape) == (8, 5, 30522)


def test_losses_and_metrics_match_numpy(real_batch):
    x, y, w = real_batch
    w = {"mlm_labels": w["mlm_labels"].copy()}
    w["mlm_labels"][:, -2:] = 0.0  # two padding predictions per example
    pretrainer = BertPretrainer(BertBackbone(**SMALL))
    pretrainer.compile(optimizer="sgd")
    result = pretrainer.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)

    out = pretrainer.predict(x, verbose=0)

    def cross_entropy(logits, labels):
        logits = logits - logits.max(-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]

    mlm = cross_entropy(out["mlm_logits"].astype("float64"), y["mlm_labels"])
    weights = w["mlm_labels"]
    mlm_loss = (mlm * weights).sum() / weights.sum()
    nsp_loss = cross_entropy(out["nsp_logits"].astype("float64"), y["nsp_labels"]).mean()
    accuracy = ((out["mlm_logits"].argmax(-1) == y["mlm_labels"]) * weights).sum() / weights.sum()
    np.testing.assert_allclose(result["mlm_loss"], mlm_loss, rtol=1e-5)
    np.testing.assert_allclose(result["nsp_loss"], nsp_loss, rtol=1e-5)
    np.testing.assert_allclose(result["loss"], mlm_loss + nsp_loss, rtol=1e-5)
    np.testing.assert_allclose(result["mlm_accuracy"], accuracy, atol=1e-6)
    nsp_accuracy = (out["nsp_logits"].argmax(-1) == y["nsp_labels"]).mean()
    np.testing.assert_allclose(result["nsp_accuracy"], nsp_accuracy, atol=1e-6)

    # Without sample_weight every prediction counts.
    unweighted = pretrainer.evaluate(x, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(unweighted["mlm_loss"], mlm.mean(), rtol=1e-5)


def test_tiny_bert_overfits_a_real_batch(real_batch):
    x, y, w = real_batch
    backbone = BertBackbone(**SMALL, dropout=0.0)
    pretrainer = BertPretrainer(backbone)
    pretrainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = pretrainer.fit(x, y, sample_weight=w, epochs=150, batch_size=8, verbose=0)
    losses = history.history["mlm_loss"]
    assert losses[-1] < 0.1, losses[-10:]
    assert history.history["mlm_accuracy"][-1] == 1.0


def test_fit_on_dataset_without_next_sentence(tokenizer):
    from tfbert.text import movie_reviews

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "imdb.txt")
    write_pretraining_text([text for text, _ in movie_reviews("imdb")[:30]], path)
    dataset = pretraining_dataset(path, tokenizer, 32, 8, next_sentence=False, seed=0)
    pretrainer = BertPretrainer(BertBackbone(**SMALL), next_sentence_prediction=False)
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    history = pretrainer.fit(dataset.take(3), epochs=2, verbose=0)
    assert set(history.history) == {"loss", "mlm_loss", "mlm_accuracy"}
    assert history.history["mlm_loss"][1] < history.history["mlm_loss"][0]
    assert "nsp_logits" not in pretrainer.predict(next(iter(dataset))[0], verbose=0)


def test_mixed_bfloat16_training_step(real_batch):
    x, y, w = real_batch
    pretrainer = BertPretrainer(BertBackbone(**SMALL, dtype="mixed_bfloat16"))
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    history = pretrainer.fit(x, y, sample_weight=w, epochs=3, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["mlm_loss"][-1] < history.history["mlm_loss"][0]
    out = pretrainer.predict(x, verbose=0)
    assert out["mlm_logits"].dtype == np.float32


def test_model_harness_and_weight_tying_after_reload(tmp_path, real_batch):
    x, y, w = real_batch

    def build(dtype=None):
        return BertPretrainer(BertBackbone(**SMALL, dropout=0.0, dtype=dtype))

    run_model_test(build, x, y, sample_weight=w, float32_outputs=(0, 1))
    pretrainer = build()
    pretrainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    pretrainer.fit(x, y, sample_weight=w, epochs=1, verbose=0)
    pretrainer.save(tmp_path / "pretrainer.keras")
    restored = keras.saving.load_model(tmp_path / "pretrainer.keras")
    assert restored.masked_lm_head.token_embedding is restored.backbone.token_embedding
    # Training continues from the restored optimizer state.
    assert int(restored.optimizer.iterations) == 1
    restored.fit(x, y, sample_weight=w, epochs=1, verbose=0)


def test_bad_usage_raises_clear_errors(real_batch):
    x, y, w = real_batch
    pretrainer = BertPretrainer(BertBackbone(**SMALL))
    with pytest.raises(ValueError, match="without `loss`, `metrics`"):
        pretrainer.compile(optimizer="adam", loss="mse")
    pretrainer.compile(optimizer="adam")
    with pytest.raises(
        ValueError, match=r"needs targets y with keys \['mlm_labels', 'nsp_labels'\]"
    ):
        pretrainer.fit(x, {"mlm_labels": y["mlm_labels"]}, epochs=1, verbose=0)
    flat_weights = tf.data.Dataset.from_tensors((x, y, w["mlm_labels"]))
    with pytest.raises(ValueError, match="takes sample_weight as a dict"):
        pretrainer.fit(flat_weights, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="`backbone` must be a tfbert.models.BertBackbone"):
        BertPretrainer(keras.Sequential([keras.layers.Dense(2)]))
