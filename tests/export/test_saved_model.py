import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbert.export import check_ops, run_saved_model, saved_model, verify_saved_model
from tfbert.text import BertTokenizer


def test_text_classifier_serves_raw_text_like_keras(tmp_path, sentiment, texts):
    path = saved_model(sentiment, str(tmp_path / "sentiment"))
    assert path == str(tmp_path / "sentiment" / "1")
    report = verify_saved_model(path, sentiment, texts)
    assert report["max_abs_diff"] < 1e-5 and report["requests"] == 4

    # Label names come back as strings from the served model.
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures["serving_default"](text=tf.constant(texts[:3]))
    expected = sentiment.predict_labels(texts[:3])
    assert [name.decode() for name in outputs["label_name"].numpy()] == expected
    assert sorted(outputs) == ["label", "label_name", "logits", "probabilities"]

    # Every weight is stored once (TF Serving loads all of them into memory).
    weights = sum(weight.numpy().nbytes for weight in sentiment.classifier.weights)
    folder = os.path.join(path, "variables")
    stored = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))
    assert weights < stored < 1.01 * weights


def test_versions_count_up_and_are_never_overwritten(tmp_path, sentiment):
    export_dir = str(tmp_path / "sentiment")
    assert saved_model(sentiment, export_dir).endswith(os.sep + "1")
    assert saved_model(sentiment, export_dir).endswith(os.sep + "2")
    stamp = os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb"))
    with pytest.raises(FileExistsError, match="versions are immutable"):
        saved_model(sentiment, export_dir, version=1)
    assert os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb")) == stamp
    assert sorted(os.listdir(export_dir)) == ["1", "2"]  # no staging folders left
    assert saved_model(sentiment, export_dir, version=7).endswith(os.sep + "7")


def test_backbone_serves_sequence_and_pooled_output(tmp_path, sentiment, texts):
    backbone, tokenizer = sentiment.classifier.backbone, sentiment.tokenizer
    path = saved_model(backbone, str(tmp_path / "backbone"), tokenizer=tokenizer)
    verify_saved_model(path, backbone, texts, tokenizer=tokenizer)
    (answer,) = run_saved_model(path, [("serving_default", {"text": texts[:2]})])
    assert answer["sequence_output"].shape == (2, 64, 384)
    assert answer["pooled_output"].shape == (2, 384)


def test_text_pairs_are_served(tmp_path, sentiment, texts):
    path = saved_model(sentiment, str(tmp_path / "pairs"), pairs=True)
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](
        text=tf.constant(texts[:2]), text_pair=tf.constant(texts[2:4])
    )
    expected = sentiment.predict({"texts": texts[:2], "pairs": texts[2:4]}, verbose=0)
    np.testing.assert_allclose(served["logits"].numpy(), expected["logits"], atol=1e-5)


def test_bad_exports_and_requests_get_clear_errors(tmp_path, sentiment, vocabulary_file):
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="is not built"):
        saved_model(unbuilt, str(tmp_path / "unbuilt"))
    small = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    with pytest.raises(ValueError, match="tokenizer has 6 tokens but the model's embedding has"):
        saved_model(sentiment.classifier, str(tmp_path / "wrong"), tokenizer=small)
    assert not os.path.exists(tmp_path / "unbuilt") and not os.path.exists(tmp_path / "wrong")

    path = saved_model(sentiment, str(tmp_path / "served"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a string tensor"):
        serve(text=tf.constant([1, 2]))
    with pytest.raises(TypeError, match="text"):
        serve()
    ids = tf.saved_model.load(path).signatures["serve_token_ids"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a int32 tensor"):
        ids(
            token_ids=tf.constant([[1.0]]),
            segment_ids=tf.constant([[0]]),
            padding_mask=tf.constant([[1]]),
        )


def test_token_ids_outside_the_vocabulary_fail_clearly(tmp_path, tiny):
    path = saved_model(tiny, str(tmp_path / "tiny"))
    # The check runs on TF Serving: its ops are in the TF Serving manifest.
    assert {"Assert", "Less", "LessEqual"} <= check_ops(
        path, "tf-serving", signature="serve_token_ids"
    )
    serve = tf.saved_model.load(path).signatures["serve_token_ids"]
    rest = {"segment_ids": tf.zeros((1, 3), tf.int32), "padding_mask": tf.ones((1, 3), tf.int32)}
    assert serve(token_ids=tf.constant([[101, 30521, 102]]), **rest)["label"].shape == (1,)
    refusal = r"token_ids must be in \[0, 30522\): the model has 30522 tokens; make the ids"
    for bad in (30522, -1):
        with pytest.raises(tf.errors.InvalidArgumentError, match=refusal):
            serve(token_ids=tf.constant([[101, bad, 102]]), **rest)
    # The same in a process that has only TensorFlow, as TF Serving loads it.
    request = {
        "token_ids": [[101, 40000, 102]],
        "segment_ids": [[0] * 3],
        "padding_mask": [[1] * 3],
    }
    with pytest.raises(RuntimeError, match=refusal):
        run_saved_model(path, [("serve_token_ids", request)])
