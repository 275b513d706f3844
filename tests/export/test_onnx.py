import os

import numpy as np
import pytest

from tfbert.export import model_outputs, onnx, run_onnx
from tfbert.text import BertTokenizer


@pytest.mark.parametrize("part", ["classifier", "backbone"])
def test_onnx_runtime_matches_keras_at_two_batch_sizes_and_lengths(
    tmp_path, sentiment, texts, vocabulary_file, part
):
    model = sentiment.classifier if part == "classifier" else sentiment.classifier.backbone
    path = onnx(model, str(tmp_path / f"{part}.onnx"), tokenizer=sentiment.tokenizer)
    for length in (16, 64):
        tokenizer = BertTokenizer(vocabulary_file, sequence_length=length)
        for batch in (texts[:1], texts):
            inputs = tokenizer(batch)
            expected = model_outputs(model, inputs)
            got = run_onnx(path, {name: value.numpy() for name, value in inputs.items()})
            assert sorted(got) == sorted(expected)
            for name, value in expected.items():
                np.testing.assert_allclose(got[name], value.numpy(), atol=1e-4, err_msg=name)


def test_onnx_refuses_to_overwrite_and_odd_names(tmp_path, sentiment):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"a model someone saved")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        onnx(sentiment, str(path))
    assert path.read_bytes() == b"a model someone saved"
    with pytest.raises(ValueError, match="end in .onnx"):
        onnx(sentiment, str(tmp_path / "model.bin"))
    small = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    with pytest.raises(ValueError, match="tokenizer has 6 tokens but the model's embedding has"):
        onnx(sentiment.classifier, str(tmp_path / "other.onnx"), tokenizer=small)
    assert os.listdir(tmp_path) == ["model.onnx"]
