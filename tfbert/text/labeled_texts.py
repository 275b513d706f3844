"""Labelled texts and text pairs from a user's CSV/TSV file, with errors that name
file, line and column."""

import csv
import io
import os


def read_labeled_texts(path: str, label_names=None) -> tuple[list[str], list[int]]:
    """`(texts, labels)` from a CSV or TSV file with a header row naming `text` and `label`.

    TSV is chosen by a `.tsv` ending. A label is a class index (0, 1, ...)
    or, with `label_names`, one of those names.

    Args:
        path: str, the CSV/TSV file (UTF-8, with or without a BOM).
        label_names: optional list of class names the labels may use.

    Example:
        texts, labels = read_labeled_texts("train.csv", ["negative", "positive"])

    Raises:
        ValueError: the file is empty, not UTF-8, lacks a column, or has an
            empty text or an unknown label; the message names the file, line
            and column.
    """
    columns, rows = _read_table(path, ("text", "label"))
    text_column, label_column = columns["text"], columns["label"]
    names = {name: index for index, name in enumerate(label_names or [])}
    texts, labels = [], []
    for line, row in rows:
        text, label = row[text_column].strip(), row[label_column].strip()
        if not text:
            raise ValueError(f"{path} line {line}, column 'text': the text is empty.")
        if label in names:
            labels.append(names[label])
        elif label.isdigit() and (not names or int(label) < len(names)):
            labels.append(int(label))
        else:
            allowed = f"one of {list(names)} or 0..{len(names) - 1}" if names else "an index"
            raise ValueError(
                f"{path} line {line}, column 'label': unknown label {label!r}; use {allowed}."
            )
        texts.append(text)
    if not texts:
        raise ValueError(f"{os.path.abspath(path)} has a header but no examples.")
    return texts, labels


def _read_table(path: str, required: tuple[str, ...]) -> tuple[dict[str, int], list]:
    """(column indices of `required`, [(line, row)]) of a UTF-8 CSV/TSV file
    with a header row; TSV by a `.tsv` ending. Errors name file and line."""
    delimiter = "\t" if path.endswith(".tsv") else ","
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")  # a BOM (Excel's "CSV UTF-8") is not part of it
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path} line {line} is not UTF-8 text (byte {error.start} of the file: "
            f"{error.reason}); save the file as UTF-8."
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = [(reader.line_num, row) for row in reader]  # the line a row ends on
    names = ",".join(required)
    if not rows or not any(row for _, row in rows):
        raise ValueError(f"{path} is empty; it needs a header row '{names}' and examples.")
    header = [name.strip() for name in rows[0][1]]
    missing = [name for name in required if name not in header]
    if missing:
        raise ValueError(
            f"{path} line 1: the header {header} has no {' or '.join(map(repr, missing))} "
            f"column; name the columns {' and '.join(map(repr, required))}."
        )
    body = []
    for line, row in rows[1:]:
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{path} line {line}: {len(row)} columns, the header has {len(header)}."
            )
        body.append((line, row))
    return {name: header.index(name) for name in required}, body


def read_text_pairs(path: str) -> list[tuple[str, str]]:
    """(source, target) pairs from a CSV or TSV file with `source` and `target`
    columns (translation or summarization data for `seq2seq_dataset`).

    Raises:
        ValueError: the file is empty, not UTF-8, lacks a column, or has an
            empty source or target; the message names the file, line and column.
    """
    columns, rows = _read_table(path, ("source", "target"))
    pairs = []
    for line, row in rows:
        pair = tuple(row[columns[name]].strip() for name in ("source", "target"))
        for name, value in zip(("source", "target"), pair, strict=True):
            if not value:
                raise ValueError(f"{path} line {line}, column '{name}': the {name} is empty.")
        pairs.append(pair)
    if not pairs:
        raise ValueError(f"{os.path.abspath(path)} has a header but no examples.")
    return pairs
