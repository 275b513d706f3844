"""Decoding speed: cached vs uncached, greedy vs beam, tfbert vs keras-hub, side by side.

Both models have the same size (3 encoder and 3 decoder blocks, width 256,
4 heads, feed-forward 1024, 8,000 shared tokens; random weights, since speed
does not depend on them) and decode the same 32-token sources. Every loop is
a `tf.function` compiled with XLA (keras-hub's default for `generate` on
TensorFlow, and tfbert's) and runs the whole output length: the samplers
are called without end tokens, so no row stops early.

- tfbert cached: `Transformer.generate_tokens` with its static key/value
  cache (one decoder step per token);
- tfbert uncached: the same loop re-running the decoder over the whole
  output buffer every step (what the keras-io translation example does);
- keras-hub cached: `keras_hub.layers.TransformerDecoder` blocks with their
  self- and cross-attention caches, `TokenAndPositionEmbedding` and the
  keras-hub `GreedySampler` / `BeamSampler(4)`, wired as keras-hub's own
  seq2seq models wire them.

Tokens/s counts generated tokens (batch x (length - 1)), the median of
--repeats calls after a warm-up. "per token" is ms per generated position:
flat when the cost grows linearly with the output length.

    python benchmarks/bench_decode.py [--repeats 3] [--lengths 16 64 128]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from tfbert.export.verify import median_ms  # noqa: E402
from tfbert.models import BeamSampler, Transformer  # noqa: E402

VOCABULARY, LAYERS, WIDTH, HEADS, FFN, SOURCE = 8000, 3, 256, 4, 1024, 32
START = 2


def without_end_tokens(sampler):
    """The sampler, run to the end of the buffer (no stop tokens)."""

    def run(next, prompt, **kwargs):
        kwargs["stop_token_ids"] = None
        return sampler(next, prompt, **kwargs)

    return run


def keras_hub_seq2seq(max_length):
    """A keras-hub encoder-decoder of the same size; returns (encode, generate)."""
    embedding = keras_hub.layers.TokenAndPositionEmbedding(VOCABULARY, max_length, WIDTH)
    encoders = [
        keras_hub.layers.TransformerEncoder(FFN, HEADS, activation="relu") for _ in range(LAYERS)
    ]
    decoders = [
        keras_hub.layers.TransformerDecoder(FFN, HEADS, activation="relu") for _ in range(LAYERS)
    ]
    head_dim = WIDTH // HEADS

    def encode(source, mask):
        x = embedding(source)
        for layer in encoders:
            x = layer(x, padding_mask=mask)
        return x

    def generate(source, mask, length, sampler):
        batch = ops.shape(source)[0]
        encoded = encode(source, mask)
        self_cache = ops.zeros((batch, LAYERS, 2, length, HEADS, head_dim))
        cross_cache = ops.zeros((batch, LAYERS, 2, SOURCE, HEADS, head_dim))
        # Fill the cross-attention caches once (keras-hub's seq2seq models do the same).
        start = ops.full((batch, 1), START, "int32")
        x = embedding(start)
        filled = []
        for i, layer in enumerate(decoders):
            x, _, cross = layer(
                x,
                encoder_sequence=encoded,
                encoder_padding_mask=mask,
                self_attention_cache=self_cache[:, i],
                self_attention_cache_update_index=0,
                cross_attention_cache=cross_cache[:, i],
                cross_attention_cache_update_index=0,
            )
            filled.append(cross)
        cross_cache = ops.stack(filled, axis=1)

        def next(prompt, cache, index):
            self_cache, cross_cache, encoded, mask = cache
            x = embedding.token_embedding(prompt[:, index - 1 : index])
            x = x + embedding.position_embedding(x, start_index=index - 1)
            updated = []
            for i, layer in enumerate(decoders):
                x, layer_cache, _ = layer(
                    x,
                    encoder_sequence=encoded,
                    encoder_padding_mask=mask,
                    self_attention_cache=self_cache[:, i],
                    self_attention_cache_update_index=index - 1,
                    cross_attention_cache=cross_cache[:, i],
                )
                updated.append(layer_cache)
            logits = ops.matmul(x[:, 0], ops.transpose(embedding.token_embedding.embeddings))
            return logits, None, (ops.stack(updated, axis=1), cross_cache, encoded, mask)

        prompt = ops.concatenate([start, ops.zeros((batch, length - 1), "int32")], axis=1)
        return sampler(next, prompt, cache=(self_cache, cross_cache, encoded, mask), index=1)

    return encode, generate


def decoders(model, hub_generate, search: str, length: int) -> dict:
    """The three XLA-compiled decoding loops compared, by name."""

    def sampler(library):
        if search == "beam":
            return BeamSampler(4) if library == "tfbert" else keras_hub.samplers.BeamSampler(4)
        return keras_hub.samplers.GreedySampler()

    cached_sampler = without_end_tokens(sampler("tfbert"))
    uncached_sampler = without_end_tokens(sampler("tfbert"))
    hub_sampler = sampler("keras-hub")

    def tfbert_cached(inputs):
        return model.generate_tokens(inputs, length, cached_sampler, use_cache=True)

    def tfbert_uncached(inputs):
        return model.generate_tokens(inputs, length, uncached_sampler, use_cache=False)

    def hub_cached(inputs):
        return hub_generate(
            inputs["encoder_token_ids"], inputs["encoder_padding_mask"], length, hub_sampler
        )

    return {
        "tfbert cached": tf.function(tfbert_cached, jit_compile=True),
        "tfbert uncached": tf.function(tfbert_uncached, jit_compile=True),
        "keras-hub cached": tf.function(hub_cached, jit_compile=True),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    longest = max(args.lengths + [SOURCE])

    keras.utils.set_random_seed(0)
    model = Transformer(
        VOCABULARY, LAYERS, HEADS, WIDTH, FFN, dropout=0.0, max_sequence_length=longest
    )
    _, hub_generate = keras_hub_seq2seq(longest)
    rng = np.random.default_rng(0)

    rows = []
    for batch in args.batches:
        source = rng.integers(5, VOCABULARY, (batch, SOURCE)).astype("int32")
        mask = np.ones_like(source)
        inputs = {"encoder_token_ids": source, "encoder_padding_mask": mask}
        for length in args.lengths:
            for search in ("greedy", "beam"):
                runs = decoders(model, hub_generate, search, length)
                generated = batch * (length - 1)
                for name, function in runs.items():
                    ms = median_ms(lambda f=function, i=inputs: np.asarray(f(i)), args.repeats)
                    rows.append((batch, length, search, name, ms, generated))
                    print(
                        f"  batch {batch} length {length} {search} {name}: {ms:.0f} ms",
                        flush=True,
                    )

    print()
    print("| batch | length | search | decoder | ms | tokens/s | ms per token | vs keras-hub |")
    print("|---|---|---|---|---|---|---|---|")
    hub = {(b, n, s): ms for b, n, s, name, ms, _ in rows if name == "keras-hub cached"}
    for batch, length, search, name, ms, generated in rows:
        ratio = hub[(batch, length, search)] / ms
        print(
            f"| {batch} | {length} | {search} | {name} | {ms:.0f} | {1000 * generated / ms:.0f} "
            f"| {ms / (length - 1):.2f} | {ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
