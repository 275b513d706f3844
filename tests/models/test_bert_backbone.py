import keras
import numpy as np
import pytest

from tests.test_case import assert_all_close, run_model_test
from tfbert.models import BERT_PRESETS, BertBackbone

TINY = {
    "vocabulary_size": 30522,
    "num_layers": 2,
    "num_heads": 4,
    "hidden_dim": 32,
    "intermediate_dim": 64,
    "max_sequence_length": 64,
}


def test_outputs_and_shapes(real_inputs):
    backbone = BertBackbone(**TINY)
    out = backbone(real_inputs)
    assert set(out) == {"sequence_output", "pooled_output"}
    assert tuple(out["sequence_output"].shape) == (8, 32, 32)
    assert tuple(out["pooled_output"].shape) == (8, 32)
    # The pooled output is the tanh projection of [CLS].
    pooled = np.tanh(
        np.asarray(out["sequence_output"])[:, 0] @ backbone.pooler.kernel.numpy()
        + backbone.pooler.bias.numpy()
    )
    assert_all_close(out["pooled_output"], pooled, atol=1e-5)


def test_bert_base_has_the_published_parameter_count():
    # Hugging Face BertModel (bert-base-uncased, with pooler): 109,482,240.
    assert BertBackbone.from_preset("bert_base").count_params() == 109_482_240


def test_presets_follow_the_papers():
    sizes = {
        name: (p["num_layers"], p["hidden_dim"], p["num_heads"], p["intermediate_dim"])
        for name, p in BERT_PRESETS.items()
    }
    assert sizes == {
        "bert_tiny": (2, 128, 2, 512),
        "bert_mini": (4, 256, 4, 1024),
        "bert_small": (4, 512, 8, 2048),
        "bert_medium": (8, 512, 8, 2048),
        "bert_base": (12, 768, 12, 3072),
        "bert_large": (24, 1024, 16, 4096),
    }
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=1000, dropout=0.0)
    assert (backbone.num_layers, backbone.hidden_dim, backbone.vocabulary_size) == (2, 128, 1000)


def test_padded_and_unpadded_real_sentences_agree(real_inputs):
    backbone = BertBackbone(**TINY)
    padded = backbone(real_inputs)
    lengths = real_inputs["padding_mask"].sum(axis=1)
    assert lengths.min() < 32  # the fixture really contains padding
    for row, length in enumerate(lengths):
        single = {k: v[row : row + 1, :length] for k, v in real_inputs.items()}
        alone = backbone(single)
        assert_all_close(
            np.asarray(padded["sequence_output"])[row : row + 1, :length],
            alone["sequence_output"],
            atol=1e-5,
        )
        assert_all_close(
            np.asarray(padded["pooled_output"])[row : row + 1], alone["pooled_output"], atol=1e-5
        )


def test_hidden_states_and_attention_scores(real_inputs):
    backbone = BertBackbone(**TINY, return_hidden_states=True, return_attention_scores=True)
    out = backbone(real_inputs)
    assert len(out["hidden_states"]) == 3 and len(out["attention_scores"]) == 2
    assert_all_close(out["hidden_states"][-1], out["sequence_output"], atol=0.0)
    scores = np.asarray(out["attention_scores"][0])
    assert scores.shape == (8, 4, 32, 32)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    padded_keys = real_inputs["padding_mask"][:, None, None, :] == 0
    assert np.all(np.broadcast_to(padded_keys, scores.shape) <= (scores < 1e-6))
    # The same weights without the extra outputs give the same sequence output.
    plain = BertBackbone(**TINY)
    plain.set_weights(backbone.get_weights())
    assert_all_close(plain(real_inputs)["sequence_output"], out["sequence_output"], atol=0.0)


def test_model_harness(real_inputs):
    # Config, .keras save/load, XLA, mixed bfloat16 (every layer), on real sentences.
    def build(dtype=None):
        return BertBackbone(**TINY, activation="gelu_approximate", dropout=0.0, dtype=dtype)

    run_model_test(build, real_inputs)


def test_dropout_only_in_training(real_inputs):
    backbone = BertBackbone(**TINY, dropout=0.2)
    a = backbone(real_inputs, training=True)["sequence_output"]
    b = backbone(real_inputs, training=True)["sequence_output"]
    assert not np.allclose(a, b)
    assert_all_close(
        backbone(real_inputs)["sequence_output"],
        backbone(real_inputs)["sequence_output"],
        atol=0.0,
    )


def test_bad_inputs_raise_clear_errors(real_inputs):
    with pytest.raises(ValueError, match="hidden_dim=30, num_heads=4"):
        BertBackbone(**{**TINY, "hidden_dim": 30})
    with pytest.raises(ValueError, match="Unknown preset name='bert_huge'.*bert_tiny"):
        BertBackbone.from_preset("bert_huge")
    with pytest.raises(ValueError, match="length 32 exceeds max_sequence_length=16"):
        BertBackbone(**{**TINY, "max_sequence_length": 16})(real_inputs)
    with pytest.raises(ValueError, match=r"`token_ids` must be in \[0, vocabulary_size=100\)"):
        BertBackbone(**{**TINY, "vocabulary_size": 100})(real_inputs)
    with pytest.raises(ValueError, match="`num_layers` must be a positive integer"):
        BertBackbone(**{**TINY, "num_layers": 0})


PER_LAYER = {**TINY, "num_heads": [4, 1], "head_dim": 4, "intermediate_dim": [64, 8]}


def test_per_layer_sizes_model_harness(real_inputs):
    # Per-layer head counts and FFN widths (what structured pruning leaves),
    # num_heads * head_dim below hidden_dim: the whole model harness.
    def build(dtype=None):
        return BertBackbone(**PER_LAYER, dropout=0.0, return_attention_scores=True, dtype=dtype)

    out = run_model_test(build, real_inputs, float32_outputs=(0, 1))
    assert [tuple(s.shape) for s in out["attention_scores"]] == [(8, 4, 32, 32), (8, 1, 32, 32)]
    backbone = build()
    blocks = backbone.transformer_layers
    assert [tuple(b.self_attention.output_dense.kernel.shape) for b in blocks] == [
        (4, 4, 32),
        (1, 4, 32),
    ]
    assert [tuple(b.output_dense.kernel.shape) for b in blocks] == [(64, 32), (8, 32)]
    assert backbone.get_config()["num_heads"] == [4, 1]


def test_sizes_given_per_layer_or_once_build_the_same_model(real_inputs):
    keras.utils.set_random_seed(7)
    plain = BertBackbone(**TINY)
    keras.utils.set_random_seed(7)
    listed = BertBackbone(
        **{**TINY, "num_heads": [4, 4], "intermediate_dim": (64, 64)}, head_dim=8
    )
    for a, b in zip(plain.get_weights(), listed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert_all_close(listed(real_inputs), plain(real_inputs), atol=0.0)
    assert plain.get_config()["head_dim"] is None
    assert listed.get_config()["intermediate_dim"] == [64, 64]  # lists, as JSON reads back


def test_per_layer_sizes_refuse_a_hugging_face_checkpoint(tmp_path):
    with pytest.raises(ValueError, match=r"num_heads=\[4, 1\], intermediate_dim=\[64, 8\].*"
                       r"Save it with `model.save\('model.keras'\)` instead"):  # fmt: skip
        BertBackbone(**PER_LAYER).save_checkpoint(str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="head_dim=4, hidden_dim=32"):
        BertBackbone(**{**TINY, "head_dim": 4}).save_checkpoint(str(tmp_path / "hf"))
    assert not (tmp_path / "hf").exists()


def test_bad_per_layer_sizes_raise_clear_errors():
    expected = r"num_layers=2 positive integers; received num_heads=\[4, 4, 4\]"
    with pytest.raises(ValueError, match=expected):
        BertBackbone(**{**PER_LAYER, "num_heads": [4, 4, 4]})
    with pytest.raises(
        ValueError, match=r"`intermediate_dim` .* received intermediate_dim=\[64, 0\]"
    ):
        BertBackbone(**{**PER_LAYER, "intermediate_dim": [64, 0]})
    with pytest.raises(ValueError, match=r"`head_dim` is required when `num_heads` is a list"):
        BertBackbone(**{**PER_LAYER, "head_dim": None})
    with pytest.raises(ValueError, match=r"`head_dim` must be a positive integer or None "
                       r"\(hidden_dim // num_heads\); received head_dim=2.5"):  # fmt: skip
        BertBackbone(**{**PER_LAYER, "head_dim": 2.5})
