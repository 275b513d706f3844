"""Masked-LM masking for BERT pretraining, batched and stateless.

Follows create_pretraining_data.py of google-research/bert: a row of n tokens
gets `min(max_predictions, max(1, round(n * masked_lm_probability)))`
predictions; words are visited in random order and a word is masked whole
when it still fits (with whole-word masking a word is a piece and its "##"
continuations, otherwise every piece is a word); each chosen token becomes
[MASK] 80% of the time, a random token 10% and stays 10%. [CLS], [SEP] and
padding are never chosen.

Randomness comes from stateless ops keyed by a seed tensor, so the same seed
gives the same masks on any machine and in any tf.data order. keras-nlp's
`MaskedLMMaskGenerator` draws from stateful ops and has no whole-word mode,
which is why tfbert masks here.
"""

import tensorflow as tf


class MaskedLMMasker:
    """Chooses and replaces masked-LM positions in (batch, length) token ids.

    Args:
        tokenizer: `tfbert.text.BertTokenizer` (vocabulary and special ids).
        masked_lm_probability: float, default 0.15.
        max_predictions: int, default 20. Positions per row (P).
        whole_word_masking: bool, default False.
    """

    def __init__(
        self,
        tokenizer,
        masked_lm_probability: float = 0.15,
        max_predictions: int = 20,
        whole_word_masking: bool = False,
    ):
        if not 0.0 < masked_lm_probability < 1.0:
            raise ValueError(
                f"`masked_lm_probability` must be in (0, 1); received {masked_lm_probability}."
            )
        if not isinstance(max_predictions, int) or max_predictions < 1:
            raise ValueError(
                f"`max_predictions` must be a positive integer; received {max_predictions!r}."
            )
        self.masked_lm_probability = masked_lm_probability
        self.max_predictions = max_predictions
        self.whole_word_masking = whole_word_masking
        self.pad_token_id = tokenizer.pad_token_id
        self.mask_token_id = tokenizer.mask_token_id
        self._unmaskable = [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id]
        special = set(tokenizer.special_token_ids)
        # Random replacements are ordinary tokens, never [PAD], [MASK], ...
        self._replacements = [
            i
            for i, token in enumerate(tokenizer.vocabulary)
            if i not in special and not token.startswith("[unused")
        ]
        self._continues_word = [token.startswith("##") for token in tokenizer.vocabulary]

    def __call__(self, token_ids, seed):
        """Masks a batch.

        Args:
            token_ids: (B, L) int32 packed ids.
            seed: int64 tensor of shape (2,), the stateless random seed.

        Returns:
            dict of `token_ids` (B, L) with replacements, `mask_positions`,
            `mask_ids` (the original ids) and `mask_weights` (1.0 for a real
            prediction, 0.0 for padding), each (B, P), positions ascending.
        """
        token_ids = tf.convert_to_tensor(token_ids, tf.int32)
        batch_size, length = tf.shape(token_ids)[0], token_ids.shape[1]
        seed = tf.cast(seed, tf.int64)
        seeds = tf.random.experimental.stateless_split(seed, 4)

        selectable = tf.reduce_all(
            token_ids[:, :, None] != tf.constant(self._unmaskable)[None, None, :], axis=-1
        )
        starts_word = selectable
        if self.whole_word_masking:
            continues = tf.gather(tf.constant(self._continues_word), token_ids)
            starts_word &= ~continues
        # Word index of every token (continuations share their word's index).
        word_index = tf.maximum(tf.cumsum(tf.cast(starts_word, tf.int32), axis=1) - 1, 0)
        word_lengths = tf.math.unsorted_segment_sum(
            tf.cast(selectable, tf.int32),
            word_index + length * tf.range(batch_size)[:, None],
            batch_size * length,
        )
        word_lengths = tf.reshape(word_lengths, (batch_size, length))

        # Visit words in a random order; take each that still fits.
        real_tokens = tf.reduce_sum(tf.cast(token_ids != self.pad_token_id, tf.float32), axis=1)
        budget = tf.minimum(
            self.max_predictions,
            tf.maximum(1, tf.cast(tf.round(real_tokens * self.masked_lm_probability), tf.int32)),
        )
        priority = tf.random.stateless_uniform((batch_size, length), seeds[0])
        priority = tf.where(word_lengths > 0, priority, -1.0)  # no word: visited last
        order = tf.argsort(priority, axis=1, direction="DESCENDING", stable=True)
        visited_lengths = tf.gather(word_lengths, order, batch_dims=1)

        def visit(used, lengths):
            take = (lengths > 0) & (used + lengths <= budget)
            return used + tf.where(take, lengths, 0), take

        _, taken = tf.scan(
            lambda carry, lengths: visit(carry[0], lengths),
            tf.transpose(visited_lengths),
            initializer=(tf.zeros_like(budget), tf.zeros_like(budget, tf.bool)),
        )
        taken = tf.transpose(taken)
        word_taken = tf.gather(taken, tf.argsort(order, axis=1, stable=True), batch_dims=1)
        chosen = selectable & tf.gather(word_taken, word_index, batch_dims=1)

        # 80% [MASK], 10% a random token, 10% unchanged.
        action = tf.random.stateless_uniform((batch_size, length), seeds[1])
        replacements = tf.gather(
            tf.constant(self._replacements, tf.int32),
            tf.random.stateless_uniform(
                (batch_size, length), seeds[2], 0, len(self._replacements), tf.int32
            ),
        )
        new_ids = tf.where(action < 0.8, self.mask_token_id, token_ids)
        new_ids = tf.where((action >= 0.8) & (action < 0.9), replacements, new_ids)
        masked_ids = tf.where(chosen, new_ids, token_ids)

        positions = tf.ragged.boolean_mask(
            tf.broadcast_to(tf.range(length), tf.shape(token_ids)), chosen
        )
        shape = [token_ids.shape[0], self.max_predictions]
        return {
            "token_ids": masked_ids,
            "mask_positions": positions.to_tensor(0, shape=shape),
            "mask_ids": tf.ragged.boolean_mask(token_ids, chosen).to_tensor(0, shape=shape),
            "mask_weights": tf.ones_like(positions, tf.float32).to_tensor(0.0, shape=shape),
        }
