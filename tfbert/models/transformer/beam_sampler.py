"""Beam search with the GNMT length penalty, called like a keras-hub sampler."""

from keras import ops, tree

# Score of a beam that does not exist yet: at the first step every beam of
# an example is the same prompt, so only the first one may be extended.
_ABSENT_BEAM = -1e9


def top_index(scores):
    """Index of the largest score on the last axis (the first on a tie), int32.

    `ops.top_k` rather than `ops.argmax`: Keras' argmax on TensorFlow adds a
    `BitwiseAnd` (its negative-zero check) that LiteRT has no builtin for, and
    which would keep a decoding loop from converting to LiteRT.
    """
    return ops.cast(ops.top_k(scores, 1)[1][..., 0], "int32")


def length_penalty(lengths, alpha: float):
    """Wu et al. (2016): lp(Y) = ((5 + |Y|) / 6) ** alpha; scores are log P(Y) / lp(Y)."""
    return ops.power((5.0 + ops.cast(lengths, "float32")) / 6.0, alpha)


class BeamSampler:
    """Beam search keeping `num_beams` hypotheses per example, length-normalised.

    Every step extends each live hypothesis by every token and keeps the
    `num_beams` best candidates per example by log P / lp(length), with lp
    the GNMT length penalty (alpha 0.6 in Vaswani et al., 2017). A hypothesis
    that emits an end token is finished: it keeps its slot and its score
    while it stays among the best (so finished hypotheses compete with live
    ones for the K slots), the best finished one is also remembered when
    live beams push it out, and the search stops as soon as every slot of
    every example holds a finished hypothesis (or at the buffer's end). The
    result is the best-scoring finished hypothesis, or a cut-off one that
    scores better. With `num_beams=1` this is greedy decoding token for token.

    keras-hub's `BeamSampler` ranks by log P alone (no length penalty),
    keeps extending and rescoring beams that have ended, and scores forced
    prompt tokens with the model's probabilities; this one is called the
    same way (`sampler(next, prompt, cache, index,
    mask, stop_token_ids)`), so `generate` treats both kinds alike, and is
    built from `keras.ops` only, so the loop runs under `tf.function`, XLA
    and inside a SavedModel. The cache may be any nested structure of
    batch-first tensors; it is copied per beam and reordered with them.

    Args:
        num_beams: int, default 4. Hypotheses kept per example.
        length_penalty: float, default 0.6. The alpha above; 0 ranks by log P.

    Example:
        model.generate(source_ids, max_length=40, sampler=BeamSampler(num_beams=4))
    """

    def __init__(self, num_beams: int = 4, length_penalty: float = 0.6):
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(
                f"`num_beams` must be an integer >= 1; received num_beams={num_beams!r}."
            )
        if length_penalty < 0:
            raise ValueError(
                f"`length_penalty` must be >= 0; received length_penalty={length_penalty}."
            )
        self.num_beams = num_beams
        self.length_penalty = float(length_penalty)

    def get_config(self) -> dict:
        return {"num_beams": self.num_beams, "length_penalty": self.length_penalty}

    def __call__(
        self,
        next,
        prompt,
        cache=None,
        index=0,
        mask=None,
        stop_token_ids=None,
        hidden_states=None,
        model=None,
        **kwargs,
    ):
        """Fills `prompt` (B, L) from `index` on; returns the best hypothesis per example (B, L).

        `next(prompt, cache, index)` returns the (B*num_beams, V) logits of
        position `index`, unused hidden states and the updated cache; `mask`
        (B, L) is True at prompt tokens, which are kept, not sampled.
        """
        beams = self.num_beams
        batch_size, max_length = ops.shape(prompt)[0], ops.shape(prompt)[1]
        mask = ops.zeros_like(prompt, "bool") if mask is None else ops.cast(mask, "bool")
        stop = ops.convert_to_tensor(list(stop_token_ids or ()), "int32")
        fill_token = stop[0] if stop_token_ids else ops.convert_to_tensor(0, "int32")

        def expand(x):  # (B, ...) -> (B*K, ...), the K copies of a row adjacent
            return ops.repeat(x, beams, axis=0)

        prompt, mask = expand(prompt), expand(mask)
        cache = tree.map_structure(expand, () if cache is None else cache)
        # (B*K,) running log P, generated lengths, finished flags.
        first = ops.convert_to_tensor([0.0] + [_ABSENT_BEAM] * (beams - 1), "float32")
        log_probs = ops.tile(first, [batch_size])
        lengths = ops.zeros((batch_size * beams,), "int32")
        finished = ops.zeros((batch_size * beams,), "bool")

        def is_stop(tokens):
            if not stop_token_ids:
                return ops.zeros_like(tokens, "bool")
            return ops.any(ops.equal(tokens[:, None], stop[None, :]), axis=-1)

        def normalized(log_probs, lengths):  # (B*K,) -> (B, K) length-normalised scores
            return ops.reshape(
                log_probs / length_penalty(lengths, self.length_penalty), (-1, beams)
            )

        def cond(prompt, cache, index, log_probs, lengths, finished, best_score, best):
            if not stop_token_ids:
                return ops.convert_to_tensor(True)
            return ops.logical_not(ops.all(finished))

        def body(prompt, cache, index, log_probs, lengths, finished, best_score, best):
            logits, _, cache = next(prompt, cache, index)
            step_log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)  # (B*K, V)
            forced = mask[:, index]
            # A forced (prompt) or finished beam has one candidate: the prompt
            # token or the fill token, at an unchanged score and length.
            single = ops.logical_or(forced, finished)
            only_token = ops.where(forced, prompt[:, index], fill_token)
            vocabulary = ops.arange(ops.shape(logits)[-1], dtype="int32")
            is_only = ops.equal(vocabulary[None, :], only_token[:, None])  # (B*K, V)
            candidate_log_probs = ops.where(
                single[:, None],
                ops.where(is_only, log_probs[:, None], float("-inf")),
                log_probs[:, None] + step_log_probs,
            )
            candidate_lengths = lengths + ops.cast(ops.logical_not(single), "int32")
            scores = (
                candidate_log_probs
                / length_penalty(candidate_lengths, self.length_penalty)[:, None]
            )
            # (B, K*V) -> the K best candidates of each example.
            flat_scores = ops.reshape(scores, (batch_size, -1))
            _, chosen = ops.top_k(flat_scores, beams)
            width = ops.shape(logits)[-1]
            parents = ops.reshape(
                ops.arange(batch_size, dtype="int32")[:, None] * beams + chosen // width, (-1,)
            )
            tokens = ops.reshape(chosen % width, (-1,))
            log_probs = ops.take(ops.reshape(candidate_log_probs, (-1,)), parents * width + tokens)
            lengths = ops.take(candidate_lengths, parents)
            sampled = ops.logical_not(ops.take(forced, parents))
            newly_finished = ops.logical_and(sampled, is_stop(tokens))
            finished = ops.logical_or(ops.take(finished, parents), newly_finished)
            prompt = ops.take(prompt, parents, axis=0)
            prompt = ops.slice_update(prompt, [0, index], ops.cast(tokens, prompt.dtype)[:, None])
            cache = tree.map_structure(lambda x: ops.take(x, parents, axis=0), cache)
            # The best finished hypothesis so far, kept even after live beams
            # push it out of the K slots.
            finished_scores = ops.where(
                ops.reshape(finished, (-1, beams)), normalized(log_probs, lengths), float("-inf")
            )
            top_score = ops.max(finished_scores, axis=-1)  # (B,)
            top_rows = ops.arange(batch_size, dtype="int32") * beams + top_index(finished_scores)
            improved = top_score > best_score
            best = ops.where(improved[:, None], ops.take(prompt, top_rows, axis=0), best)
            best_score = ops.maximum(best_score, top_score)
            return prompt, cache, index + 1, log_probs, lengths, finished, best_score, best

        index = ops.cast(index, "int32")
        best_score = ops.full((batch_size,), float("-inf"), "float32")
        best = ops.take(prompt, ops.arange(batch_size, dtype="int32") * beams, axis=0)
        prompt, _, _, log_probs, lengths, _, best_score, best = ops.while_loop(
            cond,
            body,
            (prompt, cache, index, log_probs, lengths, finished, best_score, best),
            maximum_iterations=ops.cast(max_length, "int32") - index,
        )
        # The best of the final slots (finished or cut off at the buffer's end)
        # unless a finished hypothesis seen earlier scores at least as well.
        scores = normalized(log_probs, lengths)
        rows = ops.arange(batch_size, dtype="int32") * beams + top_index(scores)
        keep_best = best_score >= ops.max(scores, axis=-1)
        return ops.where(keep_best[:, None], best, ops.take(prompt, rows, axis=0))
