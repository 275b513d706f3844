"""Kernel masks: the forward-pass half of magnitude pruning.

A masked `Dense` or `EinsumDense` multiplies its kernel by a non-trainable
0/1 mask of the same shape every time it reads the kernel, so a pruned weight
contributes nothing and gets no gradient while the model trains with `fit`.
The mask is a variable of the layer: it is mirrored under a distribution
strategy and saved and loaded with the layer's weights. Which masks to set
when is decided by `tfbert.compression`; this module only applies them.
"""

import keras
from keras import ops

# Layer classes whose kernel a mask may cover, and their masked subclasses
# (filled in by masked_dense.py and masked_einsum_dense.py).
MASKED_CLASSES: dict[type, type] = {}


class KernelMask:
    """Mixin for a `Dense`/`EinsumDense` subclass: `kernel` reads `kernel * kernel_mask`.

    `pruning` holds how `tfbert.compression` recomputes the mask (schedule,
    block size, m-by-n pattern); the layer only stores and serializes it.
    """

    def __init__(self, *args, pruning: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pruning = pruning

    def _add_kernel_mask(self):
        if self.quantization_mode is not None:
            raise ValueError(
                f"Layer {self.name!r} is quantized ({self.quantization_mode}); prune the "
                "float model, then quantize the stripped result."
            )
        if getattr(self, "lora_enabled", False):
            raise ValueError(
                f"Layer {self.name!r} has LoRA enabled; merge or disable LoRA before pruning."
            )
        # Keras locks a built layer's state; enable_lora unlocks it the same way.
        self._tracker.unlock()
        self.kernel_mask = self.add_weight(
            name="kernel_mask",
            shape=self._kernel.shape,
            initializer="ones",
            dtype=self._kernel.dtype,
            trainable=False,
        )
        self._tracker.lock()

    def build(self, input_shape):
        super().build(input_shape)
        self._add_kernel_mask()

    @property
    def kernel(self):
        kernel = super().kernel
        return kernel * ops.cast(self.kernel_mask, kernel.dtype)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.built:
            store[str(len(store.keys()))] = self.kernel_mask

    def get_config(self):
        return {**super().get_config(), "pruning": self.pruning}

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self.kernel_mask.assign(store[str(len(store.keys()) - 1)])


def named_layers(root) -> dict[str, keras.layers.Layer]:
    """Every layer inside `root` once, keyed by its first path of names from `root` ("a/b/c").

    A task model reaches its backbone's blocks twice (through the backbone,
    and directly, since its graph calls them): the first path found names them.
    Two different layers on one path (a distiller's teacher and a student
    copied from it, both "bert_classifier") are told apart by a "#2", "#3"
    suffix on the later one's name.
    """
    found, seen = {}, set()

    def visit(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:
                continue
            path, copy = f"{prefix}{child.name}", 1
            while path in found:
                copy += 1
                path = f"{prefix}{child.name}#{copy}"
            seen.add(id(child))
            found[path] = child
            visit(child, f"{path}/")

    visit(root, "")
    return found


def mask_kernels(model, paths, pruning: dict | None = None) -> None:
    """Gives the `Dense`/`EinsumDense` layers at `paths` (see `named_layers`) kernel masks.

    Each layer becomes an instance of its masked subclass in place (the
    layers of a tfbert model are built by its constructor, not from a
    config, so there is no config to change): the model's graph and weights
    stay as they are, the mask starts all ones (nothing pruned), and the
    layer keeps `pruning`.
    """
    layers = named_layers(model)
    for path in paths:
        if path not in layers:
            raise ValueError(
                f"{type(model).__name__} has no layer at path {path!r} to mask; "
                f"its Dense/EinsumDense layers are: {sorted(maskable_paths(model))}."
            )
        layer = layers[path]
        if isinstance(layer, KernelMask):
            continue
        if type(layer) not in MASKED_CLASSES:
            raise ValueError(
                f"Layer {path!r} is a {type(layer).__name__}; only Dense and EinsumDense "
                "kernels can be masked."
            )
        if not layer.built:
            raise ValueError(f"Layer {path!r} is not built; build the model before masking.")
        layer.__class__ = MASKED_CLASSES[type(layer)]
        layer.pruning = pruning
        layer._add_kernel_mask()


def maskable_paths(model) -> list[str]:
    """Paths of the layers `mask_kernels` accepts (plain Dense and EinsumDense)."""
    return [
        path
        for path, layer in named_layers(model).items()
        if type(layer) in MASKED_CLASSES or isinstance(layer, KernelMask)
    ]
