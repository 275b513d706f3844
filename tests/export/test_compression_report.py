"""The compression report: measured on the LiteRT file itself, nothing replaced."""

import numpy as np
import pytest

from tfbert.export.compression_report import (
    compress_classifier,
    gzip_size,
    measure_litert,
    render_compression_table,
)
from tfbert.models import BertBackbone, BertClassifier, TextClassifier
from tfbert.text import BertTokenizer


def test_measure_litert_scores_the_file_and_gzip_sees_the_zeros(
    tmp_path, vocabulary_file, rotten_tomatoes
):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=32)
    backbone = BertBackbone(tokenizer.vocabulary_size, 1, 2, 32, 64, max_sequence_length=128)
    classifier = BertClassifier(backbone, 2)
    texts = [text for text, _ in rotten_tomatoes[::400]]
    labels = [label for _, label in rotten_tomatoes[::400]]
    row = measure_litert(
        "tiny", classifier, tokenizer, texts, labels, str(tmp_path / "m.tflite"), latency_repeats=3
    )
    logits = np.asarray(classifier(tokenizer.with_sequence_length(128)(texts)))
    assert row["accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == labels))
    assert row["parameters"] == classifier.count_params()
    assert 0 < row["gzip_size"] < row["size"]
    table = render_compression_table([row, {**row, "step": "half", "size": row["size"] / 2}])
    assert "2.0" in table.splitlines()[2]  # x smaller against the first row

    zeros, noise = tmp_path / "zeros.bin", tmp_path / "noise.bin"
    zeros.write_bytes(bytes(100_000))
    noise.write_bytes(np.random.default_rng(0).bytes(100_000))
    assert gzip_size(str(zeros)) < 1_000 < 99_000 < gzip_size(str(noise))

    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "result.txt").write_text("keep me")
    teacher = TextClassifier(tokenizer, classifier)
    with pytest.raises(FileExistsError, match="is not empty; compress into a new folder"):
        compress_classifier(teacher, texts, labels, texts, labels, str(tmp_path / "earlier"), [0])
    assert (tmp_path / "earlier" / "result.txt").read_text() == "keep me"
