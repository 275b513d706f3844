import json
import os

import numpy as np
import pytest

from tfbert.export import check_ops, litert, model_outputs, run_litert
from tfbert.text import BertTokenizer

# One worker fine-tunes MiniLM (tests/conftest.py) for these tests and the classifier's.
pytestmark = pytest.mark.xdist_group("fine_tuned_minilm")

LENGTH = 32


@pytest.fixture(scope="module")
def calibration(fine_tuned_minilm):
    """200 tokenized training sentences, one per dict, for int8 calibration."""
    train_x = fine_tuned_minilm[4]
    return [{name: value[i : i + 1] for name, value in train_x.items()} for i in range(200)]


@pytest.fixture(scope="module")
def float32_litert(tmp_path_factory, fine_tuned_minilm):
    """The fine-tuned MiniLM as a float32 .tflite file with its sidecars."""
    classifier, tokenizer = fine_tuned_minilm[:2]
    return litert(
        classifier,
        str(tmp_path_factory.mktemp("float32") / "model.tflite"),
        sequence_length=LENGTH,
        tokenizer=tokenizer,
        label_names=["negative", "positive"],
    )


def test_float32_litert_matches_keras(float32_litert, fine_tuned_minilm):
    classifier, tokenizer, test_x = fine_tuned_minilm[:3]
    path = float32_litert
    folder = os.path.dirname(path)
    sample = {name: value[:40] for name, value in test_x.items()}
    got = run_litert(path, sample)
    expected = model_outputs(classifier, sample)
    np.testing.assert_allclose(got["logits"], expected["logits"].numpy(), atol=1e-4)
    np.testing.assert_array_equal(got["label"], expected["label"].numpy())

    metadata = json.loads(open(path + ".json").read())
    assert metadata["inputs"]["token_ids"] == {"dtype": "int32", "shape": [1, LENGTH]}
    assert metadata["outputs"] == ["label", "logits", "probabilities"]
    assert metadata["label_names"] == ["negative", "positive"]
    assert metadata["label_file"] == "model.labels.txt"
    with open(os.path.join(folder, "model.labels.txt")) as f:
        assert f.read() == "negative\npositive\n"
    with open(os.path.join(folder, metadata["vocabulary"])) as f:
        vocabulary = f.read().split("\n")
    assert vocabulary[: len(tokenizer.vocabulary)] == list(tokenizer.vocabulary)


def test_quantized_models_agree_with_float_on_1000_held_out_sentences(
    tmp_path, fine_tuned_minilm, calibration, float32_litert, minilm_reference_labels
):
    classifier, _, test_x, test_y, _, _ = fine_tuned_minilm
    reference = minilm_reference_labels
    accuracy = float(np.mean(reference == test_y))
    assert accuracy > 0.70  # a trained model: agreement is not trivial
    float_size = os.path.getsize(float32_litert)
    required = {"float16": 0.99, "dynamic_int8": 0.97, "int8": 0.97}
    largest = {"float16": 0.55, "dynamic_int8": 0.3, "int8": 0.4}
    for quantization in ("float16", "dynamic_int8", "int8"):
        path = litert(
            classifier,
            str(tmp_path / f"{quantization}.tflite"),
            quantization=quantization,
            representative_data=calibration,
            sequence_length=LENGTH,
        )
        labels = run_litert(path, test_x)["label"]
        agreement = float(np.mean(labels == reference))
        print(f"{quantization}: {agreement:.3f} label agreement, {os.path.getsize(path)} bytes")
        assert len(labels) == 1000
        assert agreement >= required[quantization], f"{quantization}: {agreement:.3f}"
        assert os.path.getsize(path) < float_size * largest[quantization]


def test_int8_with_every_dense_layer_in_int8_loses_labels(
    tmp_path, fine_tuned_minilm, calibration, minilm_reference_labels
):
    """Why "int8" keeps the feed-forward output projections float."""
    classifier, _, test_x, _, _, _ = fine_tuned_minilm
    reference = minilm_reference_labels
    path = litert(
        classifier,
        str(tmp_path / "all_int8.tflite"),
        quantization="int8",
        representative_data=calibration,
        sequence_length=LENGTH,
        float_layers=(),
    )
    agreement = float(np.mean(run_litert(path, test_x)["label"] == reference))
    assert agreement < 0.96, agreement


def test_tokenizer_inside_litert_takes_raw_text(tmp_path, fine_tuned_minilm):
    classifier, tokenizer, _, _, _, texts = fine_tuned_minilm
    path = litert(
        classifier,
        str(tmp_path / "text.tflite"),
        include_tokenizer=True,
        tokenizer=tokenizer,
        sequence_length=LENGTH,
        label_names=["negative", "positive"],
    )
    got = run_litert(path, texts[:200])
    expected = model_outputs(classifier, tokenizer(texts[:200]))
    np.testing.assert_allclose(got["logits"], expected["logits"].numpy(), atol=1e-4)
    metadata = json.loads(open(path + ".json").read())
    assert metadata["inputs"] == {"text": {"dtype": "string", "shape": [1]}}
    assert metadata["tokenizer_inside"] is True
    assert metadata["custom_ops"] == ["FastBertNormalize", "FastWordpieceTokenizeWithOffsets"]
    assert check_ops(path, "litert") == {
        "FastBertNormalize": "tensorflow-text",
        "FastWordpieceTokenizeWithOffsets": "tensorflow-text",
    }

    pairs = litert(
        classifier,
        str(tmp_path / "pairs.tflite"),
        quantization="dynamic_int8",
        include_tokenizer=True,
        tokenizer=tokenizer,
        sequence_length=LENGTH,
        pairs=True,
    )
    questions, answers = texts[:50], texts[50:100]  # long pairs: both get truncated
    got = run_litert(pairs, {"text": questions, "text_pair": answers})
    expected = model_outputs(classifier, tokenizer(questions, answers))
    assert np.mean(got["label"] == expected["label"].numpy()) >= 0.96
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=0.1)


def test_bad_litert_requests_are_refused(tmp_path, fine_tuned_minilm, tiny):
    classifier = fine_tuned_minilm[0]
    with pytest.raises(ValueError, match="pass representative_data"):
        litert(classifier, str(tmp_path / "m.tflite"), quantization="int8")
    with pytest.raises(ValueError, match="Unknown quantization 'int4'"):
        litert(classifier, str(tmp_path / "m.tflite"), quantization="int4")
    with pytest.raises(ValueError, match="cannot calibrate through the tokenizer"):
        litert(
            classifier,
            str(tmp_path / "m.tflite"),
            quantization="int8",
            representative_data=[],
            include_tokenizer=True,
            tokenizer=fine_tuned_minilm[1],
        )
    with pytest.raises(ValueError, match="include_tokenizer=True needs the tokenizer"):
        litert(classifier, str(tmp_path / "m.tflite"), include_tokenizer=True)
    # Found in the calibrated model: bert_tiny has the same layer names and converts faster.
    one_example = [{name: value[:1] for name, value in fine_tuned_minilm[4].items()}]
    with pytest.raises(ValueError, match="'ffn_out', which is no dense layer.*'output_dense'"):
        litert(
            tiny.classifier,
            str(tmp_path / "m.tflite"),
            quantization="int8",
            representative_data=one_example,
            sequence_length=LENGTH,
            float_layers=("ffn_out",),
        )
    small = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    with pytest.raises(ValueError, match="tokenizer has 6 tokens but the model's embedding has"):
        litert(classifier, str(tmp_path / "m.tflite"), tokenizer=small)
    assert not os.listdir(tmp_path)
    # A sidecar someone saved is not replaced either.
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "m.labels.txt").write_text("bad\ngood\n")
    with pytest.raises(FileExistsError, match=r"m\.labels\.txt exists; pass overwrite=True"):
        litert(classifier, str(tmp_path / "kept" / "m.tflite"), label_names=["neg", "pos"])
    assert os.listdir(tmp_path / "kept") == ["m.labels.txt"]
    (tmp_path / "kept" / "m.labels.txt").unlink()
    (tmp_path / "kept").rmdir()
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n")  # another model's vocabulary
    with pytest.raises(FileExistsError, match="holds another vocabulary"):
        litert(classifier, str(tmp_path / "m.tflite"), tokenizer=fine_tuned_minilm[1])
    assert os.listdir(tmp_path) == ["vocab.txt"]
