"""Raw text to the google-research/bert pretraining text format.

That format is plain text, one sentence per line, a blank line between
documents; `pretraining_dataset` reads it.
"""

import html
import os
import re

from tfbert.files import atomic_path

# Abbreviations whose period does not end a sentence.
_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sr",
    "jr",
    "st",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "no",
    "vol",
    "fig",
    "mt",
    "ft",
    "approx",
    "dept",
    "inc",
    "ltd",
    "co",
    "u.s",
}
_MARKUP = re.compile(r"<\s*br\s*/?\s*>|<[^>]{1,20}>", re.IGNORECASE)
# A sentence end: terminal punctuation (plus closing quotes/brackets), then space,
# then something that can start a sentence.
_BOUNDARY = re.compile(r"([.!?]+[\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")


def clean_text(text: str) -> str:
    """Drops HTML line breaks/tags, unescapes entities, collapses whitespace."""
    text = html.unescape(_MARKUP.sub(" ", text))
    return re.sub(r"\s+", " ", text).strip()


# Chinese and Japanese sentence ends (full stop, exclamation, question mark,
# ellipsis), with any closing quotes or brackets: a boundary whatever follows.
_CJK_BOUNDARY = re.compile(r"(?:[。！？]|……)+[”’」』）》]*")


def split_sentences(text: str) -> list[str]:
    """Splits prose into sentences with punctuation and case rules.

    Ends a sentence at ., ! or ? (with trailing quotes or brackets) followed
    by whitespace and an upper-case letter, digit or opening quote, unless
    the period closes a known abbreviation ("Mr.", "e.g.") or an initial
    ("J."); and after Chinese 。！？ or …… wherever they stand.
    """
    sentences = []
    for part in _split_cjk(clean_text(text)):
        sentences.extend(_split_latin(part))
    return sentences


def _split_cjk(text):
    parts, start = [], 0
    for match in _CJK_BOUNDARY.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _split_latin(text: str) -> list[str]:
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        end = match.end(1)
        words = text[start:end].split()
        last_word = words[-1].rstrip(".!?\"')]").lower() if words else ""
        if match.group(1).startswith(".") and (
            last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())
        ):
            continue
        sentences.append(text[start:end].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [sentence for sentence in sentences if sentence]


def write_pretraining_text(documents, path) -> int:
    """Writes raw documents in the BERT pretraining format; returns sentences written.

    Args:
        documents: iterable of raw document strings (e.g. IMDB reviews).
        path: output file. Refuses to overwrite an existing file; written
            beside it and renamed when complete, so a failure leaves no
            partial corpus.
    """
    if os.path.exists(path):
        raise FileExistsError(f"{os.fspath(path)!r} exists; choose a new path or delete it first.")
    count = 0
    with atomic_path(path, overwrite=False) as staging:
        with open(staging, "w", encoding="utf-8") as f:
            for document in documents:
                sentences = split_sentences(document)
                if not sentences:
                    continue
                f.write("\n".join(sentences) + "\n\n")
                count += len(sentences)
    return count
