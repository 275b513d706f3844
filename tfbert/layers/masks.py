"""Attention masks: one function builds causal masks, one merges all masks.

Every mask is boolean and True where attention is allowed.
Shapes: B=batch, T=query length, S=key length.
"""

from keras import ops


def _check_rank(name: str, mask, rank: int, layout: str):
    if len(mask.shape) != rank:
        raise ValueError(
            f"`{name}` must have rank {rank} {layout}; received shape {tuple(mask.shape)}."
        )


def compute_causal_mask(batch_size, query_length, key_length, cache_index=None):
    """Boolean (B, T, S) mask letting each query see only keys at or before it.

    Args:
        batch_size: int or scalar tensor, B.
        query_length: int or scalar tensor, T.
        key_length: int or scalar tensor, S.
        cache_index: int or scalar tensor, default None. During incremental
            decoding the T new queries sit at absolute positions
            `cache_index .. cache_index + T - 1` of a cache of length S.
            Without it, queries and keys start at position 0.
    """
    query_positions = ops.arange(query_length, dtype="int32")
    if cache_index is not None:
        query_positions = query_positions + ops.cast(cache_index, "int32")
    key_positions = ops.arange(key_length, dtype="int32")
    # (T, S)
    mask = ops.expand_dims(query_positions, 1) >= ops.expand_dims(key_positions, 0)
    return ops.broadcast_to(ops.expand_dims(mask, 0), (batch_size, query_length, key_length))


def merge_attention_masks(padding_mask=None, attention_mask=None, causal_mask=None):
    """Combines the masks an attention layer receives into one boolean mask.

    Args:
        padding_mask: (B, S), True/1 for real key tokens, False/0 for padding.
        attention_mask: (B, T, S), True/1 where query t may attend to key s.
        causal_mask: (B, T, S) from `compute_causal_mask`.

    Returns:
        A boolean (B, T, S) mask, (B, 1, S) when only `padding_mask` is given,
        or None when no mask is given.
    """
    merged = None
    if padding_mask is not None:
        _check_rank("padding_mask", padding_mask, 2, "(batch, key_length)")
        # (B, 1, S): the same key mask for every query.
        merged = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)
    for name, mask in (("attention_mask", attention_mask), ("causal_mask", causal_mask)):
        if mask is None:
            continue
        _check_rank(name, mask, 3, "(batch, query_length, key_length)")
        mask = ops.cast(mask, "bool")
        merged = mask if merged is None else ops.logical_and(merged, mask)
    return merged
