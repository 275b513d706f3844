"""Magnitude pruning for Keras 3 (Zhu & Gupta, 2017), the API of
tensorflow-model-optimization's `prune_low_magnitude` for Keras 3 models.

`prune_low_magnitude` returns a copy of a model whose chosen `Dense` and
`EinsumDense` kernels carry 0/1 masks (`tfbert.layers.MaskedDense`,
`MaskedEinsumDense`); `UpdatePruningStep` recomputes the masks while `fit`
runs, following the schedule; `strip_pruning` returns the ordinary model.
Masks keep the weights of largest magnitude: unstructured, in blocks
(`block_size`), or m of every n consecutive inputs zero (`sparsity_m_by_n`).
"""

import re

import keras
import numpy as np

from tfbert.compression.pruning_schedule import get_schedule
from tfbert.layers.kernel_mask import MASKED_CLASSES, KernelMask, maskable_paths, named_layers
from tfbert.models.distributed_trainer import DistributedTrainer


def _pair(name: str, value, allow_none: bool) -> list[int] | None:
    if value is None and allow_none:
        return None
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and v >= 1 for v in value)
    ):
        raise ValueError(f"`{name}` must be two positive integers; received {name}={value!r}.")
    return list(value)


def _pruning_params(pruning_schedule, block_size, sparsity_m_by_n) -> dict:
    schedule = get_schedule(pruning_schedule)
    block_size = _pair("block_size", block_size, allow_none=False)
    m_by_n = _pair("sparsity_m_by_n", sparsity_m_by_n, allow_none=True)
    if m_by_n is not None:
        if m_by_n[0] >= m_by_n[1]:
            raise ValueError(
                "`sparsity_m_by_n` is (m, n): m zeros in every n consecutive inputs, so m "
                f"must be smaller than n, e.g. (2, 4); received sparsity_m_by_n={tuple(m_by_n)}."
            )
        if block_size != [1, 1]:
            raise ValueError(
                f"`sparsity_m_by_n={tuple(m_by_n)}` fixes the pattern itself; leave "
                f"`block_size` at (1, 1) (received {tuple(block_size)})."
            )
    return {
        "schedule": keras.saving.serialize_keras_object(schedule),
        "block_size": block_size,
        "sparsity_m_by_n": m_by_n,
    }


def _select(paths, layers, pruning_policy) -> list[str]:
    if pruning_policy is None:
        return list(paths)
    if isinstance(pruning_policy, str):
        pattern = re.compile(pruning_policy)
        chosen = [path for path in paths if pattern.search(path)]
    elif callable(pruning_policy):
        chosen = [path for path in paths if pruning_policy(layers[path])]
    else:
        raise ValueError(
            "`pruning_policy` must be None (every Dense/EinsumDense kernel), a regular "
            "expression matched against layer paths, or a callable taking a layer and "
            f"returning a bool; received {pruning_policy!r}."
        )
    if not chosen:
        raise ValueError(
            f"`pruning_policy={pruning_policy!r}` selects none of the prunable layers: "
            f"{list(paths)}."
        )
    return chosen


def _masks(model) -> dict[int, KernelMask]:
    """id(kernel_mask) -> layer, for every masked layer in `model` (or `model` itself)."""
    layers = [model, *named_layers(model).values()]
    return {id(layer.kernel_mask): layer for layer in layers if isinstance(layer, KernelMask)}


def _copy_weights(source, target) -> None:
    """Copies `source`'s weights into `target`, which differs only in kernel masks.

    A masked source kernel is copied as `kernel * mask`, so a target without
    masks holds the pruned weights as exact zeros.
    """
    source_masks, target_masks = _masks(source), _masks(target)
    kernels = {id(layer._kernel): layer for layer in source_masks.values()}
    values = [
        kernels[id(w)].kernel if id(w) in kernels else w
        for w in source.weights
        if id(w) not in source_masks
    ]
    weights = [w for w in target.weights if id(w) not in target_masks]
    if len(values) != len(weights):
        raise RuntimeError(f"Cannot copy {len(values)} weights into {len(weights)}.")
    for weight, value in zip(weights, values, strict=True):
        weight.assign(value)


def prune_low_magnitude(
    model_or_layer,
    pruning_schedule,
    block_size=(1, 1),
    sparsity_m_by_n=None,
    pruning_policy=None,
):
    """A copy of a model (or layer) whose Dense/EinsumDense kernels are pruned while it trains.

    Returns a model of the same class with the same weights, trained with
    plain `compile` + `fit` and the `UpdatePruningStep` callback. Masks are
    non-trainable variables applied in the forward pass: a pruned weight
    stays exactly zero through training (on any strategy; build the copy in
    `strategy.scope()`), and the wrapped model saves and loads as `.keras`
    with its masks and schedule, so training resumes. `strip_pruning` gives
    the ordinary model for export. Embeddings, LayerNorms and biases are
    never pruned.

    Args:
        model_or_layer: a tfbert model (`BertClassifier`, `BertBackbone`, ...
            or your own `DistributedTrainer`), a Keras Sequential or
            functional model, or a `Dense`/`EinsumDense` layer.
        pruning_schedule: `tfbert.compression.PolynomialDecay` or
            `ConstantSparsity`, or tensorflow-model-optimization's objects of
            those names as they are.
        block_size: (rows, columns), default (1, 1). Prunes whole blocks of
            the kernel viewed as (inputs, outputs), scored by their mean
            magnitude; e.g. (1, 16). Both sizes must divide the kernel's.
        sparsity_m_by_n: (m, n), default None. m zeros in every n consecutive
            inputs of each output, e.g. (2, 4) for NVIDIA's 2:4 pattern
            (tfmot's convention); the schedule then says only when.
        pruning_policy: which layers to prune: None (all Dense/EinsumDense),
            a regular expression searched in each layer's path (e.g.
            "transformer_layer_.*/(intermediate|output)_dense" for the
            FFNs), or a callable `layer -> bool`.

    Example:
        schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=300, frequency=20)
        pruned = prune_low_magnitude(classifier, schedule)
        pruned.compile(optimizer="adam"); pruned.fit(x, y, callbacks=[UpdatePruningStep()])
    """
    params = _pruning_params(pruning_schedule, block_size, sparsity_m_by_n)
    source = model_or_layer
    if isinstance(source, KernelMask) or getattr(source, "pruning", None):
        raise ValueError(
            f"{type(source).__name__} {source.name!r} is already pruning-wrapped; call "
            "strip_pruning on it first to prune it again with other settings."
        )
    if isinstance(source, keras.layers.Layer) and type(source) in MASKED_CLASSES:
        if pruning_policy is not None:
            raise ValueError("`pruning_policy` selects layers of a model; this is one layer.")
        return _convert_layer(source, MASKED_CLASSES[type(source)], params)
    if not isinstance(source, keras.Model) or not source.built:
        raise ValueError(
            "`model_or_layer` must be a built Keras model or a Dense/EinsumDense layer; "
            f"received {type(source).__name__}."
        )
    if isinstance(source, DistributedTrainer):
        layers = named_layers(source)
        paths = _select(maskable_paths(source), layers, pruning_policy)
        config = {**source.get_config(), "pruning": {"layers": paths, "params": params}}
        pruned = type(source).from_config(config)
        if not pruned.get_config().get("pruning"):
            raise ValueError(
                f"{type(source).__name__}.get_config() does not return the pruning state, so "
                "a saved copy would load without its masks; add `**self.pruning_config()` to "
                "the dict its get_config returns (as tfbert's models do)."
            )
        _copy_weights(source, pruned)
        return pruned
    if isinstance(source, keras.Sequential) or getattr(source, "_is_graph_network", False):
        chosen = set(_select(maskable_paths(source), named_layers(source), pruning_policy))

        def clone(layer):
            path = next(p for p, other in named_layers(source).items() if other is layer)
            if path in chosen:
                return MASKED_CLASSES[type(layer)].from_config(
                    {**layer.get_config(), "pruning": params}
                )
            return layer.__class__.from_config(layer.get_config())

        pruned = keras.models.clone_model(source, clone_function=clone)
        missed = sorted(chosen - set(masked_layers(pruned)))
        if missed:
            raise ValueError(
                f"Layers {missed} sit inside other layers of this Keras model, which "
                "clone_model does not rebuild; prune the inner model (e.g. a tfbert "
                "BertBackbone) itself, or choose top-level layers with `pruning_policy`."
            )
        _copy_weights(source, pruned)
        return pruned
    if hasattr(source, "classifier") and isinstance(source.classifier, DistributedTrainer):
        raise ValueError(
            f"Prune the classifier inside the {type(source).__name__}: "
            "prune_low_magnitude(model.classifier, ...), then wrap it again."
        )
    raise ValueError(
        f"Cannot prune a subclassed {type(source).__name__}: its layers are made by its "
        "own code. Derive it from tfbert.models.DistributedTrainer (functional), or "
        "prune its Dense layers one by one with prune_low_magnitude(layer, ...)."
    )


def _convert_layer(layer, cls, pruning):
    config = {key: value for key, value in layer.get_config().items() if key != "pruning"}
    converted = cls.from_config({**config, "pruning": pruning} if pruning else config)
    if layer.built:
        converted.build_from_config(layer.get_build_config())
        _copy_weights(layer, converted)
    return converted


def strip_pruning(model_or_layer):
    """The ordinary model (or layer) inside a pruning-wrapped one.

    Same class and config as before `prune_low_magnitude`, no mask
    variables; each pruned weight is an exact zero in its kernel. The result
    saves, loads and exports (SavedModel, LiteRT, ONNX) like any model.

    Example:
        final = strip_pruning(pruned)
        final.save("pruned_classifier.keras")
    """
    source = model_or_layer
    if isinstance(source, KernelMask):
        base = next(
            plain for plain, masked in MASKED_CLASSES.items() if isinstance(source, masked)
        )
        return _convert_layer(source, base, None)
    if isinstance(source, DistributedTrainer):
        if not source.pruning:
            raise ValueError(f"{type(source).__name__} {source.name!r} is not pruning-wrapped.")
        config = {k: v for k, v in source.get_config().items() if k != "pruning"}
        stripped = type(source).from_config(config)
        _copy_weights(source, stripped)
        return stripped
    if isinstance(source, keras.Model):

        def clone(layer):
            if isinstance(layer, KernelMask):
                return strip_pruning(layer)
            return layer.__class__.from_config(layer.get_config())

        stripped = keras.models.clone_model(source, clone_function=clone)
        _copy_weights(source, stripped)
        return stripped
    raise ValueError(f"Cannot strip pruning from {type(source).__name__}.")


def kernel_matrix(layer) -> tuple[list[int], int]:
    """How to view `layer`'s kernel as (inputs, outputs): (axis order, number of input axes)."""
    rank = len(layer._kernel.shape)
    if not isinstance(layer, keras.layers.EinsumDense):
        return list(range(rank)), rank - 1
    inputs, rest = layer.equation.split(",")
    kernel = rest.split("->")[0]
    contracted = [axis for axis, letter in enumerate(kernel) if letter in inputs]
    kept = [axis for axis, letter in enumerate(kernel) if letter not in inputs]
    return contracted + kept, len(contracted)


def magnitude_mask(
    kernel: np.ndarray, sparsity: float, block_size=(1, 1), sparsity_m_by_n=None
) -> np.ndarray:
    """0/1 mask keeping the largest-magnitude entries of a 2-D (inputs, outputs) kernel.

    round(count * (1 - sparsity)) entries (or blocks, scored by their mean
    magnitude) are kept, at least one; ties go to the earlier entry. With
    `sparsity_m_by_n=(m, n)`, the n - m largest of every n consecutive
    inputs of each output are kept. A kernel that blocks or groups do not
    divide is padded with zeros for the scoring, as tfmot does.

    Example:
        magnitude_mask(np.array([[0.1, -3.0], [2.0, 0.05]]), 0.5)  # [[0, 1], [1, 0]]
    """
    magnitude = np.abs(np.asarray(kernel, dtype="float64"))
    rows, columns = magnitude.shape
    if sparsity_m_by_n is not None:
        zeros, group = sparsity_m_by_n
        padded = np.pad(magnitude, ((0, -rows % group), (0, 0)))
        groups = padded.T.reshape(columns, -1, group)
        order = np.argsort(-groups, axis=-1, kind="stable")
        mask = np.zeros_like(groups)
        np.put_along_axis(mask, order[..., : group - zeros], 1.0, axis=-1)
        return mask.reshape(columns, -1).T[:rows]
    block_rows, block_columns = block_size
    padded = np.pad(magnitude, ((0, -rows % block_rows), (0, -columns % block_columns)))
    blocks = padded.reshape(
        padded.shape[0] // block_rows, block_rows, padded.shape[1] // block_columns, block_columns
    ).mean(axis=(1, 3))
    keep = max(1, int(round(blocks.size * (1.0 - sparsity))))
    order = np.argsort(-blocks, axis=None, kind="stable")
    mask = np.zeros(blocks.size)
    mask[order[:keep]] = 1.0
    mask = mask.reshape(blocks.shape)
    mask = np.repeat(np.repeat(mask, block_rows, axis=0), block_columns, axis=1)
    return mask[:rows, :columns]


def update_mask(layer, sparsity: float) -> None:
    """Recomputes a masked layer's mask at `sparsity` and zeroes its pruned weights."""
    order, inputs = kernel_matrix(layer)
    kernel = np.transpose(keras.ops.convert_to_numpy(layer.kernel), order)
    shape = kernel.shape
    matrix = kernel.reshape(int(np.prod(shape[:inputs])), -1)
    params = layer.pruning
    mask = magnitude_mask(
        matrix, sparsity, params["block_size"], params["sparsity_m_by_n"]
    ).reshape(shape)
    mask = np.transpose(mask, np.argsort(order)).astype(layer.kernel_mask.dtype)
    layer.kernel_mask.assign(mask)
    layer._kernel.assign(layer._kernel * mask)


def masked_layers(model) -> dict[str, KernelMask]:
    """The pruning-wrapped layers of `model` by path."""
    if isinstance(model, KernelMask):
        return {model.name: model}
    return {
        path: layer for path, layer in named_layers(model).items() if isinstance(layer, KernelMask)
    }


def sparsity_of(layer) -> float:
    """Fraction of zeros in the kernel `layer` computes with."""
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    return float(np.mean(kernel == 0))
