"""Held-out BLEU and ROUGE-L of a small Transformer trained here, beside baselines.

Two tasks, each with a fixed held-out split:
- German -> English: the Ding dictionary's sentence pairs (Debian
  `trans-de-en`, `german_english_pairs`), scored on the first --examples
  held-out pairs;
- headlines: BBC News articles -> their headlines (`bbc_headlines`), the
  article's first 128 word pieces in, at most 32 out.

For each task, three systems on the same tokenizer (one WordPiece vocabulary
learned on the training pairs), the same `seq2seq_dataset` batches (token-
count buckets), the same optimizer (Adam, beta_2 0.98, inverse-square-root
warmup) and the same number of epochs:
- tfbert `Transformer` (label-smoothed loss), decoded greedily and with beam
  search (4 beams, length penalty 0.6) through `Translator`;
- keras-hub: `TokenAndPositionEmbedding` + `TransformerEncoder` /
  `TransformerDecoder` blocks + a softmax `Dense`, the keras-io translation
  example's structure, built to the same size (layers, width, heads,
  feed-forward, dropout) and decoded greedily as that example does;
- copy source: the German sentence as its own translation, and for
  headlines the article's first sentence (the "lead" baseline).
BLEU is sacrebleu's (tfbert's `corpus_bleu`, tested equal), ROUGE-L
rouge-score's (`rouge_l`). Training time is printed per system.

Both models use pre-LN blocks (tfbert `normalize_first=True`, keras-hub's
`normalize_first=True`), which train stably at this learning rate, and the
same precision (--precision auto: mixed bfloat16 where the CPU has AVX512-BF16
or AMX, else float32).

    python benchmarks/bench_seq2seq.py [--epochs 6] [--examples 500] [--tasks de-en headlines]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfbert.models import Transformer, Translator  # noqa: E402
from tfbert.models.transformer.transformer_presets import TRANSFORMER_PRESETS  # noqa: E402
from tfbert.models.transformer.translator import output_texts, source_inputs  # noqa: E402
from tfbert.text import (  # noqa: E402
    bbc_headlines,
    corpus_bleu,
    german_english_pairs,
    rouge_l,
    seq2seq_dataset,
    seq2seq_tokenizer,
    split_sentences,
)
from tfbert.training import WarmupInverseSqrtDecay, cpu_flags, resolve_precision  # noqa: E402

TASKS = {
    "de-en": (german_english_pairs, 64, 64),
    "headlines": (bbc_headlines, 128, 32),
}


def optimizer(args):
    schedule = WarmupInverseSqrtDecay(args.learning_rate, args.warmup_steps)
    return keras.optimizers.Adam(schedule, beta_2=0.98, epsilon=1e-9)


def keras_hub_model(vocabulary_size, max_length, size):
    """The keras-io translation example's model, at `size` (a tfbert preset's kwargs)."""
    width, heads, ffn = size["hidden_dim"], size["num_heads"], size["intermediate_dim"]
    source = keras.Input((None,), dtype="int32", name="encoder_token_ids")
    target = keras.Input((None,), dtype="int32", name="decoder_token_ids")
    x = keras_hub.layers.TokenAndPositionEmbedding(
        vocabulary_size, max_length, width, mask_zero=True
    )(source)
    for _ in range(size["num_layers"]):
        x = keras_hub.layers.TransformerEncoder(
            ffn, heads, dropout=size["dropout"], activation="relu", normalize_first=True
        )(x)
    encoded = x
    y = keras_hub.layers.TokenAndPositionEmbedding(
        vocabulary_size, max_length, width, mask_zero=True
    )(target)
    for _ in range(size["num_layers"]):
        y = keras_hub.layers.TransformerDecoder(
            ffn, heads, dropout=size["dropout"], activation="relu", normalize_first=True
        )(y, encoded)
    y = keras.layers.Dropout(size["dropout"])(y)
    y = keras.layers.LayerNormalization()(y)  # pre-LN stacks end with a norm
    probabilities = keras.layers.Dense(vocabulary_size, activation="softmax", dtype="float32")(y)
    return keras.Model([source, target], probabilities)


def hub_greedy(model, tokenizer, sources, max_source_length, max_length, batch_size=64):
    """The keras-io example's decoding: the whole decoder again for every new token."""
    predict = tf.function(lambda s, t: model([s, t], training=False), reduce_retracing=True)
    outputs = []
    for start in range(0, len(sources), batch_size):
        batch_sources = sources[start : start + batch_size]
        inputs, empty, _ = source_inputs(tokenizer, batch_sources, max_source_length)
        source = inputs["encoder_token_ids"]
        batch = int(source.shape[0])
        target = np.zeros((batch, max_length), "int32")
        target[:, 0] = tokenizer.cls_token_id
        done = np.zeros(batch, bool)
        for index in range(1, max_length):
            probabilities = np.asarray(predict(source, target[:, :index]))
            token = probabilities[:, -1].argmax(-1)
            target[:, index] = np.where(done, tokenizer.pad_token_id, token)
            done |= token == tokenizer.sep_token_id
            if done.all():
                break
        texts = output_texts(tokenizer, target, empty).numpy()
        outputs.extend(t.decode("utf-8") for t in texts)
    return outputs


def lead_sentence(article: str) -> str:
    sentences = split_sentences(article)
    return sentences[0] if sentences else article


def run_task(name, args, rows):
    load, source_length, target_length = TASKS[name]
    train, test = load("train"), load("test")[: args.examples]
    train = train[: args.train_pairs] if args.train_pairs else train
    sources = [s for s, _ in test]
    references = [t for _, t in test]
    keras.utils.set_random_seed(args.seed)
    tokenizer = seq2seq_tokenizer(train, args.vocabulary_size)
    batches = seq2seq_dataset(
        train, tokenizer, source_length, target_length, args.tokens_per_batch, seed=args.seed
    ).cache()
    longest = max(source_length, target_length)
    size = TRANSFORMER_PRESETS[args.preset]
    print(
        f"{name}: {len(train)} training pairs, {len(test)} scored, "
        f"{tokenizer.vocabulary_size} pieces, preset {args.preset}",
        flush=True,
    )

    def score(system, outputs, seconds=None):
        row = (name, system, corpus_bleu(outputs, references), rouge_l(outputs, references))
        rows.append(row + (seconds,))
        print(f"  {system}: BLEU {row[2]:.2f}  ROUGE-L {row[3]:.4f}", flush=True)

    copy = sources if name == "de-en" else [lead_sentence(s) for s in sources]
    score("copy source" if name == "de-en" else "copy source (lead sentence)", copy)

    keras.utils.set_random_seed(args.seed)
    model = Transformer.from_preset(
        args.preset,
        vocabulary_size=tokenizer.vocabulary_size,
        max_sequence_length=longest,
        normalize_first=True,
    )
    model.compile(optimizer=optimizer(args))
    started = time.perf_counter()
    model.fit(batches, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - started
    for sampler in ("greedy", "beam"):
        translator = Translator(
            tokenizer, model, source_length, max_length=target_length, sampler=sampler
        )
        score(f"tfbert Transformer, {sampler}", translator.translate(sources), seconds)

    keras.utils.set_random_seed(args.seed)
    hub = keras_hub_model(tokenizer.vocabulary_size, longest, size)
    hub.compile(optimizer=optimizer(args), loss="sparse_categorical_crossentropy")
    hub_batches = batches.map(
        lambda x, y: (
            {
                "encoder_token_ids": x["encoder_token_ids"],
                "decoder_token_ids": x["decoder_token_ids"],
            },
            y,
        )
    )
    started = time.perf_counter()
    hub.fit(hub_batches, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - started
    outputs = hub_greedy(hub, tokenizer, sources, source_length, target_length)
    score("keras-hub encoder/decoder, greedy", outputs, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--preset", default="transformer_tiny")
    parser.add_argument("--vocabulary-size", type=int, default=4000)
    parser.add_argument("--tokens-per-batch", type=int, default=2048)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-pairs", type=int, default=0, help="0: every training pair")
    parser.add_argument("--precision", default="auto", help="both models; auto: bf16 on AMX")
    args = parser.parse_args()
    precision = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(precision)
    rows = []
    for name in args.tasks:
        run_task(name, args, rows)
    print()
    print(
        f"Same batches, optimizer and {args.epochs} epochs for both models, pre-LN blocks, "
        f"{precision}; CPU {', '.join(cpu_flags()) or 'no AVX'}, {os.cpu_count()} cores."
    )
    print("| task | system | BLEU | ROUGE-L | training s |")
    print("|---|---|---|---|---|")
    for task, system, bleu, rouge, seconds in rows:
        trained = "-" if seconds is None else f"{seconds:.0f}"
        print(f"| {task} | {system} | {bleu:.2f} | {rouge:.4f} | {trained} |")


if __name__ == "__main__":
    main()
