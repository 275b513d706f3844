"""What the Transformer and the causal language model share: the decoder stack,
its cached step, the default loss, and `generate`."""

import math

import keras
import numpy as np
from keras import ops

from tfbert.layers.kernel_mask import named_layers
from tfbert.layers.utils import check_hidden_dim
from tfbert.models.distributed_trainer import DistributedTrainer
from tfbert.models.transformer.label_smoothed_cross_entropy import LabelSmoothedCrossEntropy
from tfbert.models.transformer.samplers import get_sampler
from tfbert.models.transformer.token_accuracy import TokenAccuracy

# Shapes: B=batch, L=output buffer (max_length), S=source length, N=heads,
# H=head size, V=vocabulary.


def check_sizes(num_layers, hidden_dim, num_heads) -> None:
    """Refuses a non-positive `num_layers` and heads that do not divide `hidden_dim`."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(
            f"`num_layers` must be a positive integer; received num_layers={num_layers!r}."
        )
    check_hidden_dim(hidden_dim, num_heads)


def check_token_ids(vocabulary_size: int, **token_ids) -> None:
    """Refuses special token ids (by keyword) outside [0, vocabulary_size), by name."""
    for name, value in token_ids.items():
        valid = isinstance(value, int) and not isinstance(value, bool)
        if not valid or not 0 <= value < vocabulary_size:
            raise ValueError(
                f"`{name}` must be an integer id in [0, {vocabulary_size}); received "
                f"{name}={value!r}."
            )


# Compiled decoding loops kept per model (one per sampler, length and flags).
_COMPILED_LOOPS = 16


def check_prompt(name: str, mask: np.ndarray, max_length: int) -> None:
    """Prompts must be right-padded, 1 to max_length - 1 tokens per row."""
    lengths = mask.sum(axis=1)
    contiguous = np.all(mask == (np.arange(mask.shape[1])[None, :] < lengths[:, None]), axis=1)
    problems = []
    if np.any(lengths == 0):
        problems.append(f"rows {np.flatnonzero(lengths == 0).tolist()[:5]} are empty")
    if not np.all(contiguous):
        problems.append(
            f"rows {np.flatnonzero(~contiguous).tolist()[:5]} are not right-padded "
            "(every token first, then padding)"
        )
    if mask.shape[1] >= max_length:
        problems.append(f"it is {mask.shape[1]} columns wide, max_length={max_length}")
    if problems:
        raise ValueError(
            f"`{name}` must hold right-padded prompts of 1 to max_length - 1 = "
            f"{max_length - 1} tokens per row: {'; '.join(problems)}."
        )


def _matrix_shape(equation: str, shape) -> tuple[int, int] | None:
    """The 2-D (rows, columns) shape an EinsumDense multiplies its kernel as, or None.

    "btd,dnh->btnh" with a (D, N, H) kernel gives (D, N*H); "btnh,nhd->btd"
    with (N, H, D) gives (N*H, D): the contracted dims and the kept dims,
    each run merged. None when they interleave or a dim is batched (in the
    input, the kernel and the output, as "bnd,dnh->bnh").
    """
    operands, output = equation.split("->")
    inputs, kernel = operands.split(",")
    if any(letter in inputs and letter in output for letter in kernel):
        return None
    contracted = [letter in inputs for letter in kernel]
    splits = [i for i in range(1, len(shape)) if contracted[i] != contracted[i - 1]]
    if len(splits) != 1:
        return None
    return math.prod(shape[: splits[0]]), math.prod(shape[splits[0] :])


def loop_invariant_kernels(layers):
    """Reads the attention kernels of `layers` once, before a decoding loop;
    returns `step_scope()`, the context to trace each step in.

    XLA's CPU backend turns a batch-1 product x @ reshape(kernel), the
    reshape being part of the loop body, into a naive strided loop: a
    256 x 256 attention projection then costs 64 us instead of 6 us. So the
    >2-D EinsumDense kernels are read here as the 2-D matrices their einsums
    multiply by, and a step traced in `step_scope()` (a `keras.StatelessScope`)
    sees them reshaped back: XLA folds the two reshapes, and each step
    multiplies by a plain loop-invariant matrix. The values are the kernels'
    own, so the outputs do not change.
    """
    matrices = []
    for layer in layers:
        for sublayer in (layer, *named_layers(layer).values()):
            if not isinstance(sublayer, keras.layers.EinsumDense):
                continue
            for variable in sublayer.variables:
                shape = _matrix_shape(sublayer.equation, variable.shape)
                if variable.name == "kernel" and len(variable.shape) > 2 and shape:
                    matrices.append((variable, ops.reshape(variable, shape)))

    def step_scope():
        mapping = [(kernel, ops.reshape(matrix, kernel.shape)) for kernel, matrix in matrices]
        return keras.StatelessScope(state_mapping=mapping)

    return step_scope


class GenerativeModel(DistributedTrainer):
    """Base of `Transformer` and `CausalLanguageModel` (not used on its own).

    A subclass sets `decoder_embedding` (a `TokenAndPositionEmbedding`),
    `decoder_layers` (`TransformerDecoderBlock`s), `decoder_final_norm`
    (a LayerNormalization for pre-LN stacks, else None), `output_dense`
    (None when the output is tied to the embedding), the token ids
    `pad_token_id`/`start_token_id`/`end_token_id`, `max_sequence_length`,
    and implements `_prepare_generation`.
    """

    DEFAULT_LABEL_SMOOTHING = 0.0
    # Constructor arguments, stored as attributes of the same names: the config.
    CONFIG_ARGS: tuple = ()

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            **{arg: getattr(self, arg) for arg in self.CONFIG_ARGS},
            **self.pruning_config(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """Keras compile; "auto": label-smoothed cross-entropy and token accuracy, no padding."""
        if loss == "auto":
            loss = LabelSmoothedCrossEntropy(
                self.DEFAULT_LABEL_SMOOTHING, ignore_token_id=self.pad_token_id
            )
        if metrics == "auto":
            metrics = [TokenAccuracy(ignore_token_id=self.pad_token_id)]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # === The decoder ===

    def _logits(self, hidden):
        if self.decoder_final_norm is not None:
            hidden = self.decoder_final_norm(hidden)
        if self.output_dense is None:
            logits = self.decoder_embedding(hidden, reverse=True)
        else:
            logits = self.output_dense(hidden)
        return ops.cast(logits, "float32")

    def _decode(self, token_ids, padding_mask=None, context=None, training=None):
        """(B, T) ids -> (B, T, V) logits, every position at once (training, uncached decoding).

        `context` is {} for a decoder-only model, else {"encoder_output" (B, S, D),
        "encoder_padding_mask" (B, S)}.
        """
        context = context or {}
        x = self.decoder_embedding(token_ids, training=training)
        for block in self.decoder_layers:
            x = block(
                x,
                context.get("encoder_output"),
                decoder_padding_mask=padding_mask,
                encoder_padding_mask=context.get("encoder_padding_mask"),
                training=training,
            )
        return self._logits(x)

    def _decode_step(self, token_ids, index, cache):
        """(B, T) ids at positions index..index+T-1 -> (B, T, V) logits and the updated cache."""
        x = self.decoder_embedding(token_ids, start_index=index)
        self_caches = []
        for i, block in enumerate(self.decoder_layers):
            cross = {}
            if "cross" in cache:
                cross = {
                    "cross_attention_cache": cache["cross"][i],
                    "encoder_padding_mask": cache["encoder_padding_mask"],
                }
            x, layer_cache, *_ = block(
                x,
                self_attention_cache=cache["self"][i],
                self_attention_cache_index=index,
                **cross,
            )
            self_caches.append(layer_cache)
        return self._logits(x), {**cache, "self": tuple(self_caches)}

    def _empty_self_cache(self, batch_size, max_length):
        """One zero (B, 2, L, N, H) key/value cache per decoder block."""
        return tuple(
            ops.zeros(
                (
                    batch_size,
                    2,
                    max_length,
                    block.self_attention.num_heads,
                    block.self_attention.key_dim,
                ),
                dtype=self.decoder_embedding.compute_dtype,
            )
            for block in self.decoder_layers
        )

    # === Generation ===

    def _prepare_generation(self, inputs, max_length):
        """Returns (prompt (B, L), mask (B, L), index, context, prefill).

        `context` holds what the decoder attends to besides itself (the
        encoder output and its padding mask, or nothing); `prefill` is False
        when the prompt is just the start token, so there is nothing to cache
        before the first step.
        """
        raise NotImplementedError

    def _prompt_buffer(self, token_ids, padding_mask, max_length):
        """Right-pads (B, P) prompts to the (B, L) buffer the samplers fill, and its mask."""
        token_ids = ops.cast(token_ids, "int32")
        padding_mask = ops.cast(padding_mask, "bool")
        extra = max_length - ops.shape(token_ids)[1]
        batch_size = ops.shape(token_ids)[0]
        prompt = ops.concatenate(
            [
                ops.where(padding_mask, token_ids, self.pad_token_id),
                ops.full((batch_size, extra), self.pad_token_id, "int32"),
            ],
            axis=1,
        )
        mask = ops.concatenate([padding_mask, ops.zeros((batch_size, extra), "bool")], axis=1)
        return prompt, mask

    def generate_tokens(self, inputs, max_length: int, sampler, use_cache: bool = True):
        """The traceable loop behind `generate` (keras.ops only): (B, L) int32 ids.

        `sampler` is a sampler object (see `get_sampler`). Use this inside your
        own `tf.function` or SavedModel signature; `generate` wraps it for
        eager use.
        """
        prompt, mask, index, context, prefill = self._prepare_generation(inputs, max_length)
        batch_size = ops.shape(prompt)[0]
        step_scope = loop_invariant_kernels(self.decoder_layers)

        if use_cache:
            cache = {"self": self._empty_self_cache(batch_size, max_length)}
            if "encoder_output" in context:
                # Cross-attention keys/values: projected once, reused every step.
                cache["cross"] = tuple(
                    block.compute_cross_attention_cache(context["encoder_output"])
                    for block in self.decoder_layers
                )
                cache["encoder_padding_mask"] = context["encoder_padding_mask"]
            if prefill:
                # Keys/values of every prompt position (the pad positions are
                # overwritten before any query can see them).
                _, cache = self._decode_step(prompt, 0, cache)

            def next(prompt, cache, index):
                token = ops.slice(prompt, [0, index - 1], [ops.shape(prompt)[0], 1])
                with step_scope():
                    logits, cache = self._decode_step(token, index - 1, cache)
                return logits[:, 0, :], None, cache

        else:
            cache = dict(context)

            def next(prompt, cache, index):
                # The whole buffer again; causality hides positions >= index.
                with step_scope():
                    logits = self._decode(prompt, context=cache)
                return ops.take(logits, index - 1, axis=1), None, cache

        tokens = sampler(
            next,
            prompt,
            cache=cache,
            index=index,
            mask=mask,
            stop_token_ids=[self.end_token_id],
            model=self,
        )
        tokens = ops.cast(tokens, "int32")
        # Generated positions after the first end token become padding.
        generated = ops.logical_not(mask)
        ends = ops.cast(ops.logical_and(generated, ops.equal(tokens, self.end_token_id)), "int32")
        after_end = ops.logical_and(generated, (ops.cumsum(ends, axis=1) - ends) > 0)
        return ops.where(after_end, self.pad_token_id, tokens)

    def _check_max_length(self, max_length):
        if max_length is None:
            return self.max_sequence_length
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(
                f"`max_length` must be an integer >= 2 (the start token and at least one "
                f"generated token); received max_length={max_length!r}."
            )
        if max_length > self.max_sequence_length:
            raise ValueError(
                f"`max_length`={max_length} exceeds the model's position table "
                f"(max_sequence_length={self.max_sequence_length}); use max_length <= "
                f"{self.max_sequence_length} or build the model with a larger "
                "max_sequence_length."
            )
        return max_length

    def generate(
        self,
        inputs,
        max_length: int | None = None,
        sampler="greedy",
        use_cache: bool = True,
        num_beams: int = 4,
        seed: int | None = None,
        jit_compile: bool = True,
    ) -> np.ndarray:
        """Decodes token ids; returns a (B, max_length) int32 NumPy array.

        Each row starts with the prompt (the start token for a `Transformer`
        without a decoder prompt), then the generated ids up to and
        including the first `end_token_id`, then `pad_token_id`.

        Args:
            inputs: see the subclass (`Transformer.generate`,
                `CausalLanguageModel.generate`).
            max_length: int, default None (= max_sequence_length). Length of
                the returned rows, prompt included.
            sampler: "greedy" (default), "beam", "top_k", "top_p", or a sampler
                object: `BeamSampler(num_beams, length_penalty)`, or keras-hub's
                Greedy/TopK/TopP/Random samplers (or its `BeamSampler` without
                `return_all_beams`; `ContrastiveSampler` needs hidden states
                these models do not return). Each new object compiles its own
                loop: reuse one object across calls.
            use_cache: bool, default True. Cache each block's keys and values,
                so each new token costs one decoder step; False re-runs the
                decoder over the whole buffer every step (the same tokens,
                slower).
            num_beams: int, default 4. For `sampler="beam"`.
            seed: int, default None. Seeds "top_k"/"top_p": each call with the
                same seed draws the same tokens. (A sampler object keeps its own
                random state.)
            jit_compile: bool, default True. Compile the loop with XLA.
        """
        import tensorflow as tf  # the eager entry point compiles a tf.function

        max_length = self._check_max_length(max_length)
        key = (
            sampler if isinstance(sampler, str) else id(sampler),
            max_length,
            use_cache,
            num_beams if sampler == "beam" else None,
            seed,
            jit_compile,
        )
        functions = self.__dict__.setdefault("_generate_functions", {})
        if key not in functions:
            if len(functions) >= _COMPILED_LOOPS:  # each sampler object compiles its own loop
                functions.pop(next(iter(functions)))
            sampler_object = get_sampler(sampler, num_beams=num_beams, seed=seed)

            def generate_step(inputs):
                return self.generate_tokens(inputs, max_length, sampler_object, use_cache)

            # A seeded sampler restarts from its seed on every call, so the same
            # seed gives the same tokens.
            seed_state = [np.array(v.numpy()) for v in getattr(sampler_object, "variables", ())]
            functions[key] = (
                tf.function(generate_step, jit_compile=jit_compile, reduce_retracing=True),
                sampler_object,
                seed_state,
            )
        function, sampler_object, seed_state = functions[key]
        if seed is not None and isinstance(sampler, str):
            for variable, value in zip(sampler_object.variables, seed_state, strict=True):
                variable.assign(value)
        inputs = self._standardize_generation_inputs(inputs, max_length)
        return np.asarray(function(inputs))

    def _standardize_generation_inputs(self, inputs, max_length) -> dict:
        raise NotImplementedError


def as_int_array(name: str, value) -> np.ndarray:
    """A (B, T) int32 NumPy array from `value`, or a ValueError naming `name`."""
    array = np.asarray(keras.ops.convert_to_numpy(value))
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        raise ValueError(
            f"`{name}` must be a (batch, length) integer array; received shape "
            f"{array.shape} and dtype {array.dtype}."
        )
    return array.astype("int32")
