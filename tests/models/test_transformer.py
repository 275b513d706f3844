import os

import keras
import numpy as np
import pytest

from tests.test_case import run_model_test
from tfbert.models import BeamSampler, LabelSmoothedCrossEntropy, Transformer
from tfbert.models.transformer.generative_model import _matrix_shape, loop_invariant_kernels
from tfbert.training import WarmupInverseSqrtDecay

# The module's trained model is built once per xdist worker.
pytestmark = pytest.mark.xdist_group("test_transformer")

VOCABULARY, LENGTH = 24, 10  # 5 special ids, then 19 symbols; sources of 3-8 symbols


def reversal_task(count: int, seed: int):
    """Source symbol sequences and their reversals: (4 model inputs, target ids)."""
    rng = np.random.default_rng(seed)
    source = np.zeros((count, LENGTH), "int32")
    decoder = np.zeros((count, LENGTH), "int32")
    target = np.zeros((count, LENGTH), "int32")
    for row, length in enumerate(rng.integers(3, 9, count)):
        symbols = rng.integers(5, VOCABULARY, length)
        source[row, :length] = symbols
        decoder[row, 0] = 2  # start
        decoder[row, 1 : length + 1] = symbols[::-1]
        target[row, :length] = symbols[::-1]
        target[row, length] = 3  # end
    inputs = {
        "encoder_token_ids": source,
        "encoder_padding_mask": (source != 0).astype("int32"),
        "decoder_token_ids": decoder,
        "decoder_padding_mask": (decoder != 0).astype("int32"),
    }
    return inputs, target


def small_transformer(**overrides):
    kwargs = {
        "vocabulary_size": VOCABULARY,
        "num_layers": 2,
        "num_heads": 4,
        "hidden_dim": 64,
        "intermediate_dim": 256,
        "dropout": 0.0,
        "max_sequence_length": 16,
    }
    return Transformer(**{**kwargs, **overrides})


@pytest.fixture(scope="module")
def reverser():
    """A Transformer trained with `fit` to reverse symbol sequences, and held-out data."""
    keras.utils.set_random_seed(0)
    inputs, target = reversal_task(6400, seed=0)
    model = small_transformer()
    model.compile(
        optimizer=keras.optimizers.Adam(WarmupInverseSqrtDecay(3e-3, 100), beta_2=0.98),
        steps_per_execution=10,
    )
    model.fit(inputs, target, batch_size=64, epochs=10, verbose=0)
    held_out, held_out_target = reversal_task(500, seed=1)
    return model, held_out, held_out_target


def exact_match(generated, target):
    """Share of rows whose generated ids (after the start token) equal the target."""
    return float(np.mean(np.all(generated[:, 1:] == target, axis=1)))


@pytest.mark.parametrize("normalize_first", [False, True])
def test_model_harness(normalize_first):
    inputs, target = reversal_task(4, seed=2)
    run_model_test(
        lambda dtype=None: small_transformer(normalize_first=normalize_first, dtype=dtype),
        inputs,
        targets=target,
        float32_outputs=(0,),
    )


def test_separate_embeddings_and_an_untied_output_train_and_round_trip():
    inputs, target = reversal_task(4, seed=3)
    run_model_test(
        lambda dtype=None: small_transformer(
            vocabulary_size=(VOCABULARY, VOCABULARY + 6),
            share_embeddings=False,
            tie_output=False,
            position_encoding="learned",
            dtype=dtype,
        ),
        inputs,
        targets=target,
        float32_outputs=(0,),
    )


@pytest.mark.parametrize(
    "preset, paper_millions", [("transformer_base", 65), ("transformer_big", 213)]
)
def test_preset_sizes_match_the_paper(preset, paper_millions):
    # Vaswani et al. (2017), Table 3, with the 37,000-token shared vocabulary:
    # base 63.1M here (the paper rounds its own count to 65M), big 214.2M.
    count = Transformer.from_preset(preset).count_params()
    assert abs(count / 1e6 - paper_millions) / paper_millions < 0.035, count


def test_default_loss_is_label_smoothed_cross_entropy_over_real_tokens():
    """Equals Keras' CategoricalCrossentropy(label_smoothing=0.1) on the non-padding tokens."""
    inputs, target = reversal_task(8, seed=4)
    model = small_transformer()
    model.compile()
    logits = model.predict(inputs, verbose=0)
    real = target != 0
    reference = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        keras.ops.one_hot(target[real], VOCABULARY), logits[real]
    )
    ours = LabelSmoothedCrossEntropy(0.1)(target, logits)
    np.testing.assert_allclose(float(ours), float(reference), rtol=1e-6)
    loss, accuracy = model.evaluate(inputs, target, batch_size=8, verbose=0)
    np.testing.assert_allclose(loss, float(reference), rtol=1e-5)
    expected_accuracy = np.mean(np.argmax(logits[real], axis=-1) == target[real])
    np.testing.assert_allclose(accuracy, expected_accuracy, rtol=1e-6)


@pytest.mark.large
def test_fit_learns_to_reverse_sequences(reverser):
    model, held_out, target = reverser
    greedy = model.generate(held_out["encoder_token_ids"], max_length=LENGTH + 1)
    beam = model.generate(held_out["encoder_token_ids"], max_length=LENGTH + 1, sampler="beam")
    assert exact_match(greedy, target) >= 0.99
    assert exact_match(beam, target) >= 0.99


@pytest.mark.large
@pytest.mark.parametrize("sampler", ["greedy", "beam"])
def test_cached_and_uncached_decoding_give_the_same_tokens(reverser, sampler):
    model, held_out, _ = reverser
    source = held_out["encoder_token_ids"][:64]
    cached = model.generate(source, max_length=LENGTH + 1, sampler=sampler)
    uncached = model.generate(source, max_length=LENGTH + 1, sampler=sampler, use_cache=False)
    np.testing.assert_array_equal(cached, uncached)


def test_decoding_reads_every_attention_kernel_as_its_einsum_matrix():
    assert _matrix_shape("btd,dnh->btnh", (64, 4, 16)) == (64, 64)
    assert _matrix_shape("btnh,nhd->btd", (4, 16, 64)) == (64, 64)
    assert _matrix_shape("bnd,dnh->bnh", (64, 4, 16)) is None  # n is batched
    assert _matrix_shape("bd,dnh->bnh", (64, 4, 16)) == (64, 64)
    assert _matrix_shape("bnh,nhd->bd", (4, 16, 64)) == (64, 64)
    assert _matrix_shape("bdh,dnh->bn", (64, 4, 16)) is None  # contracted, kept, contracted
    model = small_transformer()
    model(reversal_task(2, seed=0)[0])
    step_scope = loop_invariant_kernels(model.decoder_layers)
    kernels = [v for v in model.decoder_layers[0].variables if len(v.shape) == 3]
    assert len(kernels) == 8  # Q, K, V and output of self- and cross-attention
    with step_scope() as scope:
        for kernel in kernels:
            substitute = scope.get_current_value(kernel)
            assert substitute is not None, kernel.path
            np.testing.assert_array_equal(substitute, kernel.numpy())


@pytest.mark.large
def test_beam_width_one_is_greedy_and_xla_equals_graph(reverser):
    model, held_out, _ = reverser
    source = held_out["encoder_token_ids"][:64]
    greedy = model.generate(source, max_length=LENGTH + 1)
    one_beam = model.generate(source, max_length=LENGTH + 1, sampler=BeamSampler(num_beams=1))
    np.testing.assert_array_equal(one_beam, greedy)
    for sampler in ("greedy", "beam"):
        np.testing.assert_array_equal(
            model.generate(source, max_length=LENGTH + 1, sampler=sampler, jit_compile=False),
            model.generate(source, max_length=LENGTH + 1, sampler=sampler),
        )


@pytest.mark.large
def test_outputs_end_once_then_pad(reverser):
    model, held_out, target = reverser
    generated = model.generate(held_out["encoder_token_ids"][:32], max_length=LENGTH + 4)
    for row, expected in zip(generated, target[:32], strict=True):
        length = int(np.sum(expected != 0))  # symbols + end token
        assert row[0] == model.start_token_id
        assert list(row[1 : length + 1]) == list(expected[:length])
        assert np.all(row[length + 1 :] == model.pad_token_id)


@pytest.mark.large
def test_a_decoder_prompt_is_kept_and_continued(reverser):
    model, held_out, target = reverser
    source = held_out["encoder_token_ids"][:16]
    full = model.generate(source, max_length=LENGTH + 1)
    # Prompts of 2 and 3 tokens, right-padded in one batch.
    prompt = np.array(full[:, :3])
    prompt[::2, 2] = 0
    prompted = {"encoder_token_ids": source, "decoder_token_ids": prompt}
    greedy = model.generate(prompted, max_length=LENGTH + 1)
    np.testing.assert_array_equal(greedy, full)
    beam = model.generate(prompted, max_length=LENGTH + 1, sampler="beam")
    kept = prompt != 0
    np.testing.assert_array_equal(beam[:, :3][kept], prompt[kept])
    assert exact_match(beam, target[:16]) >= 0.9


@pytest.mark.large
@pytest.mark.parametrize("sampler", ["top_k", "top_p"])
def test_random_samplers_repeat_with_a_seed(reverser, sampler):
    model, held_out, _ = reverser
    source = held_out["encoder_token_ids"][:32]
    first = model.generate(source, max_length=LENGTH + 1, sampler=sampler, seed=7)
    again = model.generate(source, max_length=LENGTH + 1, sampler=sampler, seed=7)
    other = model.generate(source, max_length=LENGTH + 1, sampler=sampler, seed=8)
    np.testing.assert_array_equal(first, again)
    if sampler == "top_k":  # five candidates per step: other draws differ
        assert not np.array_equal(first, other)
    # Every row is a well-formed output: the start token, then padding only after an end.
    assert np.all(first[:, 0] == model.start_token_id)
    for row in first:
        ends = np.flatnonzero(row == model.end_token_id)
        if len(ends):
            assert np.all(row[ends[0] + 1 :] == model.pad_token_id)


@pytest.mark.large
def test_a_saved_model_generates_the_same_tokens(reverser, tmp_path):
    model, held_out, _ = reverser
    path = os.path.join(tmp_path, "reverser.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is Transformer
    source = held_out["encoder_token_ids"][:32]
    np.testing.assert_array_equal(
        restored.generate(source, max_length=LENGTH + 1, sampler="beam"),
        model.generate(source, max_length=LENGTH + 1, sampler="beam"),
    )


def test_bad_generation_arguments_are_refused_by_name():
    model = small_transformer()
    source = reversal_task(2, seed=5)[0]["encoder_token_ids"]
    with pytest.raises(ValueError, match="num_beams"):
        model.generate(source, max_length=8, sampler="beam", num_beams=0)
    with pytest.raises(ValueError, match="Unknown sampler='nucleus'"):
        model.generate(source, max_length=8, sampler="nucleus")
    with pytest.raises(ValueError, match=r"`max_length`=40 exceeds .*max_sequence_length=16"):
        model.generate(source, max_length=40)
    with pytest.raises(ValueError, match="more than the model's max_sequence_length=16"):
        model.generate(np.ones((2, 20), "int32"), max_length=8)
    with pytest.raises(ValueError, match="encoder_token_ids"):
        model.generate({"source": source}, max_length=8)


def test_bad_constructor_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="share_embeddings=True` needs one vocabulary"):
        small_transformer(vocabulary_size=(24, 30))
    with pytest.raises(ValueError, match="end_token_id"):
        small_transformer(end_token_id=24)
    # Start and end ids are target ids: a larger target vocabulary allows them.
    small_transformer(vocabulary_size=(24, 40), share_embeddings=False, end_token_id=30)
    with pytest.raises(ValueError, match="pad_token_id"):
        small_transformer(vocabulary_size=(24, 40), share_embeddings=False, pad_token_id=30)
    with pytest.raises(ValueError, match="reduction='sum' is not supported"):
        LabelSmoothedCrossEntropy(reduction="sum")
    with pytest.raises(ValueError, match="position_encoding"):
        small_transformer(position_encoding="rotary")
    with pytest.raises(ValueError, match="Unknown preset"):
        Transformer.from_preset("transformer_huge")
