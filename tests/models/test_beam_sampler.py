import itertools

import numpy as np
import pytest
from keras import ops

from tfbert.models import BeamSampler
from tfbert.models.transformer.beam_sampler import length_penalty

VOCABULARY, START, END, LENGTH = 5, 1, 4, 4  # the buffer: start + 3 generated tokens


def markov_next(table):
    """A decoder whose next-token logits depend on the previous token only."""

    def next(prompt, cache, index):
        previous = ops.take(prompt, index - 1, axis=1)
        return ops.take(table, previous, axis=0), None, cache

    return next


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def brute_force(table, alpha):
    """The best row over every possible output, scored as log P / lp(length)."""
    log_probs = log_softmax(table.astype("float64"))
    best, best_score = None, -np.inf
    for length in range(1, LENGTH):
        for tokens in itertools.product(range(len(table)), repeat=length):
            ended = tokens[-1] == END
            if END in tokens[:-1] or (not ended and length < LENGTH - 1):
                continue  # an end token ends the row; an unended row runs to the buffer's end
            previous = (START, *tokens[:-1])
            total = sum(log_probs[p, t] for p, t in zip(previous, tokens, strict=True))
            score = total / ((5 + length) / 6) ** alpha
            if score > best_score:
                best, best_score = (START, *tokens), score
    return np.array(best + (0,) * (LENGTH - len(best)))


def run(sampler, table):
    prompt = np.zeros((1, LENGTH), "int32")
    prompt[0, 0] = START
    mask = np.zeros((1, LENGTH), bool)
    mask[0, 0] = True
    out = sampler(markov_next(table), prompt, index=1, mask=mask, stop_token_ids=[END])
    row = np.array(out)[0]
    ends = np.flatnonzero(row[1:] == END)
    if len(ends):  # positions after the end are filler
        row[ends[0] + 2 :] = 0
    return row


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_a_beam_wide_enough_finds_the_best_output(alpha, seed):
    table = np.random.default_rng(seed).normal(scale=2.0, size=(VOCABULARY, VOCABULARY))
    table = table.astype("float32")
    found = run(BeamSampler(num_beams=VOCABULARY**2, length_penalty=alpha), table)
    np.testing.assert_array_equal(found, brute_force(table, alpha))


@pytest.mark.parametrize("seed", range(4))
def test_one_beam_is_greedy(seed):
    table = np.random.default_rng(seed).normal(scale=2.0, size=(VOCABULARY, VOCABULARY))
    row = run(BeamSampler(num_beams=1), table.astype("float32"))
    expected = [START]
    while len(expected) < LENGTH:
        expected.append(int(np.argmax(table[expected[-1]])))
        if expected[-1] == END:
            break
    expected += [0] * (LENGTH - len(expected))
    np.testing.assert_array_equal(row, expected)


def test_a_finished_hypothesis_pushed_out_of_the_beam_is_still_returned():
    # Three beams: after one step they hold "2" (log P -0.51), "3" (-1.61) and
    # the finished "end" (-1.90). Three live extensions then score higher than
    # "end" and take every slot, but from tokens 5 and 6 every continuation is
    # unlikely, so no longer hypothesis ever beats "end" again.
    probabilities = np.full((7, 7), 1 / 7)
    probabilities[START] = [0.01, 0.01, 0.6, 0.2, 0.15, 0.02, 0.01]
    probabilities[2] = [0.01, 0.01, 0.01, 0.01, 0.01, 0.5, 0.45]
    probabilities[3] = [0.04, 0.04, 0.04, 0.04, 0.02, 0.8, 0.02]
    table = np.log(probabilities).astype("float32")
    found = run(BeamSampler(num_beams=3, length_penalty=0.0), table)
    np.testing.assert_array_equal(found, [START, END, 0, 0])
    np.testing.assert_array_equal(found, brute_force(table, 0.0))


def test_length_penalty_is_gnmts():
    # lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al., 2016): 1 at one token, > 1 after.
    np.testing.assert_allclose(
        ops.convert_to_numpy(length_penalty(np.array([1, 7]), 0.6)), [1.0, 2.0**0.6], rtol=1e-6
    )


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="num_beams"):
        BeamSampler(num_beams=0)
    with pytest.raises(ValueError, match="length_penalty"):
        BeamSampler(length_penalty=-1.0)
