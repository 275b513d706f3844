import keras
import numpy as np
import pytest

from tests.test_case import run_model_test
from tfbert.models import CausalLanguageModel
from tfbert.text import BertTokenizer, build_vocabulary

pytestmark = pytest.mark.xdist_group("test_causal_language_model")

LENGTH = 32


def shifted(tokenizer, texts):
    """Next-token pairs from `[CLS] text [SEP]` rows: (inputs, targets)."""
    packed = tokenizer(texts)
    ids, mask = np.asarray(packed["token_ids"]), np.asarray(packed["padding_mask"])
    return {"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}, ids[:, 1:]


@pytest.fixture(scope="module")
def imdb_model(imdb_reviews):
    """A causal LM trained with `fit` on the first 32 pieces of 4,000 IMDB reviews,
    its WordPiece tokenizer (learned on 1,000 of them) and 200 held-out reviews."""
    texts = [text for text, _ in imdb_reviews]
    train, held_out = texts[:4000], texts[20000:20200]
    tokenizer = BertTokenizer(build_vocabulary(train[:1000], 2000), sequence_length=LENGTH + 1)
    keras.utils.set_random_seed(0)
    model = CausalLanguageModel.from_preset(
        "causal_lm_tiny",
        vocabulary_size=tokenizer.vocabulary_size,
        max_sequence_length=LENGTH,
    )
    model.compile(optimizer=keras.optimizers.AdamW(3e-3), steps_per_execution=10)
    inputs, targets = shifted(tokenizer, train)
    model.fit(inputs, targets, batch_size=64, epochs=2, verbose=0)
    return model, tokenizer, targets, shifted(tokenizer, held_out)


def test_model_harness(imdb_reviews):
    tokenizer = BertTokenizer(
        build_vocabulary([t for t, _ in imdb_reviews[:200]], 500), sequence_length=17
    )
    inputs, targets = shifted(tokenizer, [t for t, _ in imdb_reviews[200:204]])
    run_model_test(
        lambda dtype=None: CausalLanguageModel(
            tokenizer.vocabulary_size, 2, 4, 64, 128, max_sequence_length=16, dtype=dtype
        ),
        inputs,
        targets=targets,
        float32_outputs=(0,),
    )


@pytest.mark.large
def test_fit_on_imdb_beats_a_unigram_model(imdb_model):
    """Held-out perplexity well under that of the training set's token frequencies."""
    model, tokenizer, train_targets, (held_out, held_out_targets) = imdb_model
    counts = np.bincount(train_targets[train_targets != 0], minlength=tokenizer.vocabulary_size)
    frequencies = (counts + 1) / (counts + 1).sum()
    real = held_out_targets != 0
    unigram_perplexity = float(np.exp(-np.mean(np.log(frequencies[held_out_targets[real]]))))
    loss, _ = model.evaluate(held_out, held_out_targets, verbose=0)
    perplexity = float(np.exp(loss))
    assert perplexity < 0.6 * unigram_perplexity, (perplexity, unigram_perplexity)


@pytest.mark.large
@pytest.mark.parametrize("sampler", ["greedy", "beam"])
def test_cached_and_uncached_decoding_give_the_same_tokens(imdb_model, sampler):
    model, _, _, (held_out, _) = imdb_model
    # Real prompts of 3 to 6 pieces, right-padded in one batch.
    prompts = np.array(held_out["token_ids"][:16, :6])
    for row, length in enumerate(np.arange(16) % 4 + 3):
        prompts[row, length:] = 0
    cached = model.generate(prompts, max_length=24, sampler=sampler)
    uncached = model.generate(prompts, max_length=24, sampler=sampler, use_cache=False)
    np.testing.assert_array_equal(cached, uncached)
    kept = prompts != 0
    np.testing.assert_array_equal(cached[:, :6][kept], prompts[kept])
    for row in cached:  # generated up to the first end token, padding after it
        ends = np.flatnonzero(row == model.end_token_id)
        stop = ends[0] if len(ends) else len(row)
        assert np.all(row[:stop] != model.pad_token_id)
        assert np.all(row[stop + 1 :] == model.pad_token_id)


@pytest.mark.large
def test_generated_text_continues_the_prompt(imdb_model):
    model, tokenizer, _, (held_out, _) = imdb_model
    prompts = np.array(held_out["token_ids"][:4, :4])
    texts = tokenizer.detokenize(model.generate(prompts, max_length=LENGTH, sampler="beam"))
    for text, prompt in zip(texts.numpy(), tokenizer.detokenize(prompts).numpy(), strict=True):
        assert text.startswith(prompt)
        assert len(text.split()) > len(prompt.split())


def test_bad_prompts_are_refused_by_name():
    model = CausalLanguageModel(50, 1, 2, 16, 32, max_sequence_length=8)
    with pytest.raises(
        ValueError, match=r"1 to max_length - 1 = 7 tokens per row: rows \[0, 1\] are empty"
    ):
        model.generate(np.zeros((2, 3), "int32"), max_length=8)
    with pytest.raises(ValueError, match=r"rows \[1\] are not right-padded"):
        model.generate(np.array([[2, 9, 0], [0, 2, 9]], "int32"), max_length=8)
    with pytest.raises(ValueError, match="it is 8 columns wide, max_length=8"):
        model.generate(np.full((2, 8), 2, "int32"), max_length=8)
    with pytest.raises(ValueError, match="max_sequence_length=8"):
        model.generate(np.full((2, 3), 2, "int32"), max_length=9)
    with pytest.raises(ValueError, match="token_ids"):
        model.generate({"ids": np.full((2, 3), 2, "int32")}, max_length=8)
