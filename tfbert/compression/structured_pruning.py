"""Structured pruning: attention heads and feed-forward neurons removed from BERT.

Importance is Michel et al. (2019), "Are Sixteen Heads Really Better than
One?": the gradient of the loss with respect to a mask xi that multiplies
each head's output (each FFN neuron's activation), at xi = 1, its absolute
value per batch summed over batches. Pruning then rebuilds the model with
fewer heads per layer and narrower FFNs, so it is physically smaller and
faster, and copies every kept weight.

    scores = head_importance(classifier, dataset)          # (num_layers, num_heads)
    smaller = prune_heads(classifier, {0: [1, 3], 2: [0]})  # a new BertClassifier
    smaller = prune_ffn(smaller, {1: list(range(64))})
"""

import keras
import numpy as np
import tensorflow as tf  # gradients (GradientTape) are backend-specific

from tfbert.models import BertBackbone

# Shapes: B=batch, T=length, D=model width, N=heads, H=head size,
# I=intermediate (FFN) width.


def _backbone(model) -> BertBackbone:
    if isinstance(model, BertBackbone):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, BertBackbone):
        return backbone
    raise ValueError(
        "`model` must be a BertBackbone or a model built on one (BertClassifier, "
        "BertTokenClassifier, BertQuestionAnswerer, BertPretrainer); received "
        f"{type(model).__name__}. For a TextClassifier pass its `.classifier`."
    )


def _per_layer_result(scores: list):
    """One (num_layers, width) array when every layer has the same width, else the list."""
    return np.stack(scores) if len({len(s) for s in scores}) == 1 else scores


def gradient_scores(model, data, loss=None):
    """(head scores, neuron scores, mean loss): per layer, |dL/dxi| summed over batches.

    Masking head n multiplies rows n of the attention output kernel W_o
    (N, H, D) by xi_n, so dL/dxi_n at xi = 1 is sum(W_o[n] * dL/dW_o[n]);
    neuron j is likewise row j of the FFN's output kernel (I, D). The
    gradient with respect to those two kernels gives both scores without
    changing the model.
    """
    backbone = _backbone(model)
    if loss is None and type(model).compute_loss is keras.Model.compute_loss:
        if not model.compiled:
            raise ValueError(
                "`loss` is None and the model is not compiled, so it has no loss to "
                "score with; compile it with a loss or pass `loss=fn(y_true, y_pred)`."
            )
    blocks = backbone.transformer_layers
    kernels = [block.self_attention.output_dense.kernel for block in blocks]
    kernels += [block.output_dense.kernel for block in blocks]

    @tf.function(reduce_retracing=True)
    def step(x, y, sample_weight):
        with tf.GradientTape() as tape:
            # Frozen (non-trainable) kernels are not watched by default.
            tape.watch([kernel.value for kernel in kernels])
            y_pred = model(x, training=False)
            if loss is None:
                value = model.compute_loss(
                    x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
                )
            else:
                value = loss(y, y_pred)
            value = tf.cast(value, "float32")
        gradients = tape.gradient(value, [kernel.value for kernel in kernels])
        scores = []
        for kernel, gradient in zip(kernels, gradients, strict=True):
            if gradient is None:
                raise ValueError(
                    f"The loss does not depend on {kernel.path}; it cannot score heads "
                    "or neurons. Pass a `loss` computed from the model's outputs."
                )
            product = tf.cast(kernel.value, "float32") * tf.cast(gradient, "float32")
            # (N, H, D) -> (N,) per head; (I, D) -> (I,) per neuron.
            scores.append(tf.abs(tf.reduce_sum(product, axis=list(range(1, product.shape.rank)))))
        return scores, value

    totals, losses = None, []
    for batch in data:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        scores, value = step(x, y, sample_weight)
        scores = [np.asarray(score, "float64") for score in scores]
        totals = scores if totals is None else [t + s for t, s in zip(totals, scores, strict=True)]
        losses.append(float(value))
    if totals is None:
        raise ValueError("`data` gave no batches; pass a dataset of (x, y) batches.")
    layers = len(blocks)
    return totals[:layers], totals[layers:], float(np.mean(losses))


def head_importance(model, data, loss=None) -> np.ndarray | list[np.ndarray]:
    """Importance of every attention head (Michel et al., 2019).

    The absolute gradient of the loss with respect to each head's mask at 1,
    per batch, summed over the batches of `data`; computed with dropout off.

    Args:
        model: a `BertBackbone` or a model built on one (`BertClassifier`, ...).
        data: a `tf.data.Dataset` or iterable of `(x, y)` or
            `(x, y, sample_weight)` batches, real examples.
        loss: optional `fn(y_true, y_pred)` returning a scalar; default the
            model's own loss (`model.compute_loss`: the compiled loss, or
            the built-in one of `BertPretrainer`).

    Returns:
        A float64 NumPy array (num_layers, num_heads), or a list of one
        (num_heads,) array per layer when layers have different head counts.

    Example:
        classifier.compile(optimizer="adam")
        scores = head_importance(classifier, dataset.take(8))
        weakest = {layer: [int(np.argmin(s))] for layer, s in enumerate(scores)}
    """
    heads, _, _ = gradient_scores(model, data, loss)
    return _per_layer_result(heads)


def ffn_importance(model, data, loss=None) -> np.ndarray | list[np.ndarray]:
    """Importance of every feed-forward neuron: as `head_importance`, with a
    mask on each block's intermediate activations (B, T, I).

    Args: as `head_importance`.

    Returns:
        A float64 NumPy array (num_layers, intermediate_dim), or a list of
        one array per layer when the widths differ.

    Example:
        scores = ffn_importance(classifier, dataset.take(8))
        weakest = {layer: np.argsort(s)[:64].tolist() for layer, s in enumerate(scores)}
        smaller = prune_ffn(classifier, weakest)
    """
    _, neurons, _ = gradient_scores(model, data, loss)
    return _per_layer_result(neurons)


def _checked_indices(name: str, to_prune, sizes: list[int], what: str) -> dict:
    """`to_prune` ({layer: [indices]}) checked against per-layer `sizes`, as sorted sets."""
    if not isinstance(to_prune, dict):
        raise ValueError(
            f"`{name}` must be a dict {{layer index: [{what[:-1]} indices]}}; received "
            f"{type(to_prune).__name__}."
        )
    checked = {}
    for layer, indices in to_prune.items():
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"`{name}` keys must be integer layer indices; received {layer!r}.")
        if not 0 <= layer < len(sizes):
            raise ValueError(
                f"`{name}` names layer {layer}, but the model has {len(sizes)} layers "
                f"(indices 0 to {len(sizes) - 1})."
            )
        indices = [indices] if isinstance(indices, (int, np.integer)) else list(indices)
        size = sizes[layer]
        bad = [
            i
            for i in indices
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < size
        ]
        if bad:
            raise ValueError(
                f"`{name}`[{layer}] has {what[:-1]} indices {bad} out of range: layer "
                f"{layer} has {size} {what} (indices 0 to {size - 1})."
            )
        unique = sorted({int(i) for i in indices})
        if len(unique) == size:
            raise ValueError(
                f"`{name}`[{layer}] removes all {size} {what} of layer {layer}; at least "
                f"one must remain (received {unique})."
            )
        if unique:
            checked[int(layer)] = unique
    return checked


def _size_config(sizes: list[int]):
    """An int when every layer has the same size (a plain backbone config), else the list."""
    return sizes[0] if len(set(sizes)) == 1 else sizes


def _prune(model, heads_to_prune: dict, neurons_to_prune: dict):
    """A new model of `model`'s class without the given heads and neurons."""
    backbone = _backbone(model)
    if getattr(model, "pruning", None) or backbone.pruning:
        raise ValueError(
            "`model` carries magnitude-pruning masks (its `pruning` config is set); "
            "finish or remove magnitude pruning before removing heads or neurons."
        )
    blocks = backbone.transformer_layers
    heads = [block.num_heads for block in blocks]
    widths = [block.intermediate_dim for block in blocks]
    drop_heads = _checked_indices("heads_to_prune", heads_to_prune, heads, "heads")
    drop_neurons = _checked_indices("neurons_to_prune", neurons_to_prune, widths, "neurons")
    keep_heads = [np.setdiff1d(np.arange(n), drop_heads.get(i, [])) for i, n in enumerate(heads)]
    keep_neurons = [
        np.setdiff1d(np.arange(n), drop_neurons.get(i, [])) for i, n in enumerate(widths)
    ]

    config = backbone.get_config()
    if drop_heads:
        config["num_heads"] = _size_config([len(kept) for kept in keep_heads])
        config["head_dim"] = blocks[0].self_attention.key_dim
    if drop_neurons:
        config["intermediate_dim"] = _size_config([len(kept) for kept in keep_neurons])
    if model is backbone:
        pruned = type(model).from_config(config)
    else:
        model_config = model.get_config()
        model_config["backbone"] = {**model_config["backbone"], "config": config}
        pruned = type(model).from_config(model_config)

    values = {weight.path: keras.ops.convert_to_numpy(weight) for weight in model.weights}

    def keep(variable, kept, axis):
        if variable is not None:
            values[variable.path] = np.take(values[variable.path], kept, axis=axis)

    for block, kept_heads, kept_neurons in zip(blocks, keep_heads, keep_neurons, strict=True):
        attention = block.self_attention
        for dense in (attention.query_dense, attention.key_dense, attention.value_dense):
            keep(dense.kernel, kept_heads, 1)  # (D, N, H)
            keep(dense.bias, kept_heads, 0)  # (N, H)
        keep(attention.output_dense.kernel, kept_heads, 0)  # (N, H, D)
        keep(block.intermediate_dense.kernel, kept_neurons, 1)  # (D, I)
        keep(block.intermediate_dense.bias, kept_neurons, 0)  # (I,)
        keep(block.output_dense.kernel, kept_neurons, 0)  # (I, D)

    targets = {weight.path: weight for weight in pruned.weights}
    mismatched = sorted(set(targets) ^ set(values)) + [
        f"{path} {values[path].shape} -> {tuple(weight.shape)}"
        for path, weight in targets.items()
        if path in values and values[path].shape != tuple(weight.shape)
    ]
    if mismatched:
        raise ValueError(
            f"The pruned {type(model).__name__} does not have the original's weights "
            f"(a quantized or otherwise rewritten model?): {', '.join(mismatched)}."
        )
    for path, weight in targets.items():
        weight.assign(values[path])
    return pruned


def prune_heads(model, heads_to_prune: dict[int, list[int]]) -> keras.Model:
    """A new, smaller model without the given attention heads.

    Query, key and value projections lose those heads' columns and the
    output projection their rows; every other weight (embeddings,
    LayerNorms, FFNs, pooler, task heads) is copied exactly, so the new
    model computes what `model` computes with those heads' `head_mask` at 0.
    It is uncompiled; compile it to fine-tune.

    Args:
        model: a `BertBackbone` or a model built on one (`BertClassifier`,
            `BertTokenClassifier`, `BertQuestionAnswerer`, `BertPretrainer`).
        heads_to_prune: `{layer index: [head indices]}`, as Hugging Face's
            `prune_heads`; indices count the heads `model` has now. Every
            layer keeps at least one head.

    Returns:
        A model of `model`'s class whose backbone has per-layer `num_heads`.

    Example:
        smaller = prune_heads(classifier, {0: [0, 2], 1: [3]})
        smaller.compile(optimizer=keras.optimizers.AdamW(2e-5))
        smaller.fit(dataset, epochs=1)
    """
    return _prune(model, heads_to_prune, {})


def prune_ffn(model, neurons_to_prune: dict[int, list[int]]) -> keras.Model:
    """A new, smaller model without the given feed-forward neurons.

    The FFN's first dense layer loses those columns (and biases), the second
    those rows; every other weight is copied exactly. It is uncompiled.

    Args:
        model: as `prune_heads`.
        neurons_to_prune: `{layer index: [neuron indices]}`, indices in
            [0, that layer's intermediate_dim). Every layer keeps at least
            one neuron.

    Returns:
        A model of `model`'s class whose backbone has per-layer
        `intermediate_dim`.

    Example:
        scores = ffn_importance(classifier, dataset)
        smaller = prune_ffn(classifier, {0: np.argsort(scores[0])[:256].tolist()})
        smaller.compile(optimizer="adam")
    """
    return _prune(model, {}, neurons_to_prune)


def least_important(scores: list, count: int) -> dict:
    """{layer: [indices]} of the `count` lowest scores over all layers; each
    layer's scores are divided by their L2 norm first (Michel et al.), and
    every layer keeps at least one unit."""
    ranked = sorted(
        (value / (np.linalg.norm(layer_scores) + 1e-20), layer, index)
        for layer, layer_scores in enumerate(scores)
        for index, value in enumerate(layer_scores)
    )
    left = [len(layer_scores) for layer_scores in scores]
    chosen = {}
    for _, layer, index in ranked:
        if count == 0:
            break
        if left[layer] > 1:
            chosen.setdefault(layer, []).append(index)
            left[layer] -= 1
            count -= 1
    return {layer: sorted(indices) for layer, indices in sorted(chosen.items())}


def iterative_prune(
    model,
    train_data,
    score_data,
    rounds: int = 2,
    head_fraction: float = 0.1,
    ffn_fraction: float = 0.1,
    epochs: int = 1,
    loss=None,
    fit_kwargs: dict | None = None,
) -> tuple[keras.Model, list[dict]]:
    """Score, prune the least important heads and neurons, fine-tune; repeated.

    Each round scores heads and neurons on `score_data` (`head_importance`,
    `ffn_importance`, one pass), removes the lowest-scoring
    `head_fraction` of the heads and `ffn_fraction` of the neurons the model
    had at the start (ranked over all layers after dividing each layer's
    scores by their L2 norm, as Michel et al.; every layer keeps one), and
    fine-tunes the pruned model with `fit` on `train_data`, compiled as
    `model` was (a fresh optimizer of the same settings each round).

    Args:
        model: a compiled `BertBackbone` or model built on one.
        train_data: what `fit` takes as `x`: a `tf.data.Dataset` of
            `(x, y)` batches.
        score_data: a re-iterable `tf.data.Dataset` or list of `(x, y)` batches.
        rounds: int, default 2.
        head_fraction: float in [0, 1), default 0.1, per round.
        ffn_fraction: float in [0, 1), default 0.1, per round.
        epochs: int, default 1. Fine-tuning epochs per round.
        loss: optional scoring loss, as in `head_importance`.
        fit_kwargs: other `fit` arguments (default `verbose=0`).

    Returns:
        `(pruned model, rounds)`: per round a dict with `score_loss` (mean
        loss on `score_data` before that round's pruning), `pruned_heads`
        and `pruned_neurons` ({layer: indices in that round's model}),
        `num_heads` and `intermediate_dim` (per layer, after pruning),
        `params` and `history` (the `fit` history).

    Example:
        classifier.compile(optimizer=keras.optimizers.AdamW(2e-5))
        smaller, rounds = iterative_prune(classifier, train, held_out, rounds=3)
        print([r["params"] for r in rounds])
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be a positive integer; received rounds={rounds!r}.")
    for name, fraction in (("head_fraction", head_fraction), ("ffn_fraction", ffn_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1); received {name}={fraction!r}.")
    if not model.compiled:
        raise ValueError(
            "`model` must be compiled: iterative_prune fine-tunes every pruned model "
            "with the same compile settings."
        )
    compile_config = model.get_compile_config()
    blocks = _backbone(model).transformer_layers
    heads_per_round = int(round(head_fraction * sum(b.num_heads for b in blocks)))
    neurons_per_round = int(round(ffn_fraction * sum(b.intermediate_dim for b in blocks)))
    fit_kwargs = {"verbose": 0, **(fit_kwargs or {})}

    history = []
    for _ in range(rounds):
        heads, neurons, score_loss = gradient_scores(model, score_data, loss)
        pruned_heads = least_important(heads, heads_per_round)
        pruned_neurons = least_important(neurons, neurons_per_round)
        model = _prune(model, pruned_heads, pruned_neurons)
        model.compile_from_config(compile_config)
        fitted = model.fit(train_data, epochs=epochs, **fit_kwargs)
        blocks = _backbone(model).transformer_layers
        history.append(
            {
                "score_loss": score_loss,
                "pruned_heads": pruned_heads,
                "pruned_neurons": pruned_neurons,
                "num_heads": [b.num_heads for b in blocks],
                "intermediate_dim": [b.intermediate_dim for b in blocks],
                "params": model.count_params(),
                "history": fitted.history,
            }
        )
    return model, history
