import keras
import numpy as np
import pytest

from tfbert.models import BertBackbone
from tfbert.training import create_adamw, create_lamb


def _tiny_backbone(num_layers):
    return BertBackbone(
        vocabulary_size=100,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
    )


@pytest.mark.parametrize(
    "create, kind",
    [(create_adamw, keras.optimizers.AdamW), (create_lamb, keras.optimizers.Lamb)],
)
def test_weight_decay_skips_layer_norm_and_biases(create, kind):
    backbone = _tiny_backbone(num_layers=1)
    optimizer = create(learning_rate=0.1, weight_decay=0.5)
    optimizer.build(backbone.trainable_variables)
    before = {v.path: v.numpy().copy() for v in backbone.trainable_variables}
    # Zero gradients: only weight decay can move a variable.
    optimizer.apply_gradients(
        [(np.zeros(v.shape, "float32"), v) for v in backbone.trainable_variables]
    )
    for variable in backbone.trainable_variables:
        moved = not np.array_equal(before[variable.path], variable.numpy())
        excluded = variable.name in ("gamma", "beta", "bias")
        assert moved != excluded, variable.path
    assert isinstance(optimizer, kind)
    assert optimizer.global_clipnorm == 1.0


def test_layerwise_decay_scales_each_layers_step():
    backbone = _tiny_backbone(num_layers=2)
    variables = backbone.trainable_variables
    steps = {}
    for decay in (1.0, 0.5):
        for v in variables:
            v.assign(np.zeros(v.shape, "float32"))
        optimizer = create_adamw(
            0.1, weight_decay=0.0, global_clipnorm=None, layerwise_decay=decay, num_layers=2
        )
        # Adam's first step moves every weight by about the learning rate.
        optimizer.apply_gradients([(np.ones(v.shape, "float32"), v) for v in variables])
        steps[decay] = {v.path: float(np.abs(v.numpy()).mean()) for v in variables}
    ratio = {path: steps[0.5][path] / steps[1.0][path] for path in steps[1.0]}
    assert np.isclose(ratio["embeddings/token_embedding/embeddings"], 0.5**3, rtol=1e-3)
    assert np.isclose(ratio["transformer_layer_0/output_dense/kernel"], 0.5**2, rtol=1e-3)
    assert np.isclose(ratio["transformer_layer_1/output_dense/kernel"], 0.5, rtol=1e-3)
    assert np.isclose(ratio["pooler/kernel"], 1.0, rtol=1e-3)
    config = optimizer.get_config()
    assert (config["num_layers"], config["layerwise_decay"]) == (2, 0.5)
    assert type(optimizer).from_config(config).layerwise_decay == 0.5


def test_layerwise_adamw_trains_in_fit_and_reloads(tmp_path):
    from tfbert.models import BertClassifier

    classifier = BertClassifier(BertBackbone.from_preset("bert_tiny", vocabulary_size=50), 2)
    classifier.compile(optimizer=create_adamw(1e-3, layerwise_decay=0.8, num_layers=2))
    ids = np.random.default_rng(0).integers(1, 50, (8, 6)).astype("int32")
    x = {"token_ids": ids, "segment_ids": 0 * ids, "padding_mask": 1 + 0 * ids}
    classifier.fit(x, np.arange(8) % 2, epochs=2, verbose=0)
    classifier.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.optimizer.layerwise_decay == 0.8
    np.testing.assert_allclose(restored.predict(x, verbose=0), classifier.predict(x, verbose=0))


def _classifier(seed_weights=None):
    from tfbert.models import BertClassifier

    classifier = BertClassifier(_tiny_backbone_for(30522), num_classes=2, dropout=0.0)
    if seed_weights is not None:
        classifier.set_weights(seed_weights)
    return classifier


def _tiny_backbone_for(vocabulary_size):
    return BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
        dropout=0.0,
    )


def test_gradient_accumulation_of_4_by_8_equals_one_batch_of_32(vocabulary_file, rotten_tomatoes):
    from tfbert.text import BertTokenizer
    from tfbert.training import WarmupPolynomialDecay

    short = BertTokenizer(vocabulary_file, sequence_length=32)
    texts = [text for text, _ in rotten_tomatoes[:64]]
    x = {k: v.numpy() for k, v in short(texts).items()}
    y = np.array([label for _, label in rotten_tomatoes[:64]])
    initial = _classifier().get_weights()

    def train(batch_size, accumulation):
        model = _classifier(initial)
        schedule = WarmupPolynomialDecay(1e-2, warmup_steps=1, total_steps=2)
        model.compile(optimizer=create_adamw(schedule, gradient_accumulation_steps=accumulation))
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        return model

    accumulated, whole = train(8, 4), train(32, None)
    assert int(accumulated.optimizer.iterations) == int(whole.optimizer.iterations) == 2
    for a, b in zip(accumulated.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # The weights did move: two AdamW updates at up to 1e-2.
    moved = max(np.abs(a - b).max() for a, b in zip(whole.get_weights(), initial, strict=True))
    assert moved > 1e-3


def test_gradient_accumulation_steps_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="positive integer"):
        create_adamw(1e-3, gradient_accumulation_steps=0)
