import json
import os

import pytest

from tfbert.export import export_artifacts
from tfbert.text import BertTokenizer

SMALL_VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "film"]


@pytest.mark.xdist_group("tiny_exports")
def test_every_runtime_is_exported_verified_and_reported(tiny_exports):
    folder, rows, _ = tiny_exports
    assert [row["artifact"] for row in rows] == [
        "Keras, float32 (in process)",
        str(folder / "model" / "1"),
        str(folder / "model.onnx"),
        str(folder / "model.tflite"),
    ]
    keras_row, *artifacts = rows
    assert keras_row["size"] is None and keras_row["batch1_ms"] > 0
    for row in artifacts:
        assert set(row) == {"artifact", "size", "max_abs_diff", "label_agreement", "batch1_ms"}
        assert row["max_abs_diff"] < 1e-4, row
        assert row["label_agreement"] == 1.0, row
        assert row["batch1_ms"] > 0, row
        assert row["size"] > 1e6, row  # bert_tiny's 4.4M float32 weights, at least
    # LiteRT takes the tokenizer's length by default, with its sidecars beside it.
    metadata = json.loads((folder / "model.tflite.json").read_text())
    assert metadata["sequence_length"] == 32 and metadata["label_file"] == "model.labels.txt"
    assert sorted(os.listdir(folder)) == [
        "model",
        "model.labels.txt",
        "model.onnx",
        "model.tflite",
        "model.tflite.json",
        "vocab.txt",
    ]


@pytest.mark.xdist_group("tiny_exports")
def test_existing_exports_are_refused_before_anything_is_written(tiny_exports, tiny):
    folder, _, sentences = tiny_exports
    before = sorted(os.listdir(folder)), sorted(os.listdir(folder / "model"))
    with pytest.raises(FileExistsError, match=r"model\.onnx exists; export into another"):
        export_artifacts(tiny, str(folder), sentences, latency_repeats=0)
    assert (sorted(os.listdir(folder)), sorted(os.listdir(folder / "model"))) == before


def test_a_tokenizer_of_another_vocabulary_is_refused(tmp_path, tiny, rotten_tomatoes):
    small = BertTokenizer(SMALL_VOCABULARY)
    with pytest.raises(ValueError) as error:
        export_artifacts(tiny.classifier, str(tmp_path), ["a film"], tokenizer=small)
    print(f"{type(error.value).__name__}: {error.value}")
    assert str(error.value).startswith(
        "The tokenizer has 7 tokens but the model's embedding has 30522: it is not the "
        "tokenizer the model was trained with"
    )
    assert "Pass the tokenizer built from the vocab.txt the model was trained on" in str(
        error.value
    )
    with pytest.raises(ValueError, match=r"Unknown export format\(s\) \['tflite'\]"):
        export_artifacts(tiny, str(tmp_path), ["a film"], formats=("tflite",))
    assert not os.listdir(tmp_path)
