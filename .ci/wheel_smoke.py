"""Run by .ci/wheel_check.sh in a new virtualenv holding only tfbert's wheel
and its dependencies, from a folder outside the repository."""

import os
import subprocess
import sys
import tempfile

import numpy as np

import tfbert
from tfbert.models import BertBackbone, BertClassifier, TextClassifier
from tfbert.text import BertTokenizer

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "bad", "film", "##s", "!"]
TEXTS = ["A good film!", "A bad film.", "Good films", "bad"]

installed = os.path.realpath(tfbert.__file__)
assert installed.startswith(os.path.realpath(sys.prefix)), f"tfbert comes from {installed}"

with tempfile.TemporaryDirectory(prefix="tfbert-wheel-smoke-") as folder:
    vocabulary_file = os.path.join(folder, "vocab.txt")
    with open(vocabulary_file, "w", encoding="utf-8") as f:
        f.write("\n".join(VOCABULARY) + "\n")
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=16)
    backbone = BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=16,
    )
    model = TextClassifier(tokenizer, BertClassifier(backbone, 2), ["negative", "positive"])
    predictions = model.predict(TEXTS, verbose=0)
    assert predictions["probabilities"].shape == (4, 2)
    np.testing.assert_allclose(predictions["probabilities"].sum(-1), 1.0, atol=1e-5)
    assert set(model.predict_labels(TEXTS)) <= {"negative", "positive"}

    # tfbert.export is reachable lazily and finds its op manifests as package data.
    path = tfbert.export.saved_model(model, os.path.join(folder, "served"))
    assert "FastWordpieceTokenizeWithOffsets" in tfbert.export.check_ops(path, "tf-serving")
    report = tfbert.export.verify_saved_model(path, model, TEXTS, lengths=(8, 16))
    assert report["max_abs_diff"] < 1e-5, report
    phone = tfbert.export.litert(
        model, os.path.join(folder, "text.tflite"), include_tokenizer=True, sequence_length=16
    )
    assert tfbert.export.check_ops(phone, "litert") == {
        "FastBertNormalize": "tensorflow-text",
        "FastWordpieceTokenizeWithOffsets": "tensorflow-text",
    }
    assert tfbert.export.verify_litert(phone, model, TEXTS)["label_agreement"] == 1.0

command = os.path.join(os.path.dirname(sys.executable), "tfbert")
done = subprocess.run([command, "export", "--help"], capture_output=True, text=True, check=True)
assert "--include-tokenizer" in done.stdout
print(f"tfbert {tfbert.__version__} from {os.path.dirname(installed)}: predict, exports ok")
