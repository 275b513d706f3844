import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbert.export import (
    TOKEN_INPUTS,
    check_ops,
    model_outputs,
    run_saved_model,
    saved_model,
    verify_saved_model,
)
from tfbert.export.saved_model import MASKED_LOGIT, bucketed_length, token_axes, trim_to_bucket
from tfbert.models import BertBackbone, BertQuestionAnswerer, BertTokenClassifier
from tfbert.text import BertTokenizer

# One worker builds this module's module-scoped fixtures (see tests/conftest.py).
pytestmark = pytest.mark.xdist_group("test_saved_model")


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


def test_versions_count_up_and_are_never_overwritten(tmp_path, tiny):
    export_dir = str(tmp_path / "tiny")
    assert saved_model(tiny, export_dir).endswith(os.sep + "1")
    assert saved_model(tiny, export_dir).endswith(os.sep + "2")
    stamp = os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb"))
    with pytest.raises(FileExistsError, match="versions are immutable"):
        saved_model(tiny, export_dir, version=1)
    assert os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb")) == stamp
    assert sorted(os.listdir(export_dir)) == ["1", "2"]  # no staging folders left
    assert saved_model(tiny, export_dir, version=7).endswith(os.sep + "7")


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


def test_bad_exports_and_requests_get_clear_errors(tmp_path, tiny, vocabulary_file):
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="is not built"):
        saved_model(unbuilt, str(tmp_path / "unbuilt"))
    small = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    with pytest.raises(ValueError, match="tokenizer has 6 tokens but the model's embedding has"):
        saved_model(tiny.classifier, str(tmp_path / "wrong"), tokenizer=small)
    assert not os.path.exists(tmp_path / "unbuilt") and not os.path.exists(tmp_path / "wrong")

    path = saved_model(tiny, str(tmp_path / "served"))
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


def test_bucketed_length_rounds_the_longest_text_up_to_a_bucket():
    def length(real_lengths, bucket=16, cap=64):
        mask = [[1] * n + [0] * (cap - n) for n in real_lengths]
        return int(bucketed_length(tf.constant(mask), bucket, cap))

    real_lengths = (1, 15, 16, 17, 32, 33, 63, 64)
    assert [length([n]) for n in real_lengths] == [16, 16, 16, 32, 32, 48, 64, 64]
    assert length([5, 40, 12]) == 48  # the longest text sets the length
    assert length([0, 0]) == 16  # at least one bucket
    assert length([35], cap=40) == 40 and length([3], bucket=64, cap=40) == 40
    # Token ids from a client may hold padding before real tokens: the last
    # real position counts, not the number of real tokens.
    assert int(bucketed_length(tf.constant([[0] * 17 + [1] * 3 + [0] * 44]), 16, 64)) == 32
    inputs = {name: tf.ones((2, 64), tf.int32) for name in TOKEN_INPUTS}
    inputs["padding_mask"] = tf.constant([[1] * 20 + [0] * 44, [1] * 3 + [0] * 61])
    assert {v.shape for v in trim_to_bucket(inputs, 16, 64).values()} == {(2, 32)}


@pytest.fixture(scope="module")
def short_and_long(rotten_tomatoes, imdb_reviews):
    """Requests of real texts: two short sentences, one, a mixed batch and a
    review longer than 64 tokens with a short sentence."""
    short = [text for text, _ in rotten_tomatoes[:300] if len(text.split()) <= 6][:2]
    mixed = [text for text, _ in rotten_tomatoes[2:9]] + short  # 10 to 34 tokens
    return [short, short[:1], mixed, [imdb_reviews[0][0], short[0]]]


def test_bucketed_classifier_serves_like_the_fixed_length_one(
    tmp_path, tiny, vocabulary_file, short_and_long
):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=64)
    fixed = saved_model(tiny, str(tmp_path / "fixed"), tokenizer=tokenizer, length_bucket=None)
    bucketed = saved_model(tiny, str(tmp_path / "bucketed"), tokenizer=tokenizer)
    check_ops(bucketed, "tf-serving")
    fixed = tf.saved_model.load(fixed).signatures["serving_default"]
    bucketed = tf.saved_model.load(bucketed).signatures["serving_default"]
    lengths = []
    for texts in short_and_long:
        lengths.append(int(bucketed_length(tokenizer(texts)["padding_mask"], 16, 64)))
        want, got = fixed(text=tf.constant(texts)), bucketed(text=tf.constant(texts))
        assert sorted(got) == ["label", "label_name", "logits", "probabilities"]
        for name in ("logits", "probabilities"):
            np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-5)
        assert got["label_name"].numpy().tolist() == want["label_name"].numpy().tolist()
    assert lengths == [16, 16, 48, 64]  # the requests cover trimmed and full lengths

    # Token ids padded to a fixed length give the fixed-length model's outputs
    # at their bucket too: at 64, and at 40 (the bucket capped at the request's
    # length). That they run at the bucket: the per-token test below.
    fixed_ids = tf.saved_model.load(tmp_path / "fixed" / "1").signatures["serve_token_ids"]
    bucketed_ids = tf.saved_model.load(tmp_path / "bucketed" / "1").signatures["serve_token_ids"]
    for length in (64, 40):
        ids = tokenizer.with_sequence_length(length)(short_and_long[2])
        want, got = fixed_ids(**ids), bucketed_ids(**ids)
        for name in ("logits", "probabilities"):
            np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), atol=1e-5)
    assert int(bucketed_length(ids["padding_mask"], 16, 40)) == 40


@pytest.fixture(scope="module", params=["backbone", "token_classifier", "question_answerer"])
def token_model(request):
    keras.utils.set_random_seed(5)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=30522)
    if request.param == "token_classifier":
        return BertTokenClassifier(backbone, num_labels=5)
    if request.param == "question_answerer":
        return BertQuestionAnswerer(backbone)
    return backbone


def test_bucketed_per_token_outputs_keep_their_shape_and_real_positions(
    tmp_path, token_model, vocabulary_file, short_and_long
):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=64)
    path = saved_model(token_model, str(tmp_path / "served"), tokenizer=tokenizer)
    if isinstance(token_model, BertBackbone):  # verification reads real positions only
        verify_saved_model(path, token_model, short_and_long[2], tokenizer=tokenizer)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    texts = short_and_long[0] + short_and_long[2][1:2]  # up to 24 tokens
    inputs = tokenizer(texts)
    length = int(bucketed_length(inputs["padding_mask"], 16, 64))
    assert length == 32
    served = {name: value.numpy() for name, value in serve(text=tf.constant(texts)).items()}
    full = {k: v.numpy() for k, v in model_outputs(token_model, inputs).items()}
    trimmed = model_outputs(token_model, {k: v[:, :length] for k, v in inputs.items()})

    def check_bucketed(served, full):
        for name, value in served.items():
            assert value.shape == full[name].shape
            if name == "pooled_output":
                np.testing.assert_allclose(value, full[name], atol=1e-5)
                continue
            # The model ran at the bucket's 32 positions: they equal Keras' there.
            np.testing.assert_allclose(value[:, :length], full[name][:, :length], atol=1e-5)
            # Past the bucket: 0, or -1e9 where the model masks padding itself.
            fill = MASKED_LOGIT if name in ("start_logits", "end_logits") else 0.0
            assert np.all(value[:, length:] == fill)

    check_bucketed(served, full)
    for name, value in served.items():  # ... and at the trimmed length alike
        if name != "pooled_output":
            np.testing.assert_allclose(value[:, :length], trimmed[name].numpy(), atol=1e-5)
    # serve_token_ids runs ids of any length at their bucket as well, and
    # its per-token outputs keep the request's length.
    ids = tokenizer.with_sequence_length(56)(texts)
    by_ids = tf.saved_model.load(path).signatures["serve_token_ids"](**ids)
    check_bucketed(
        {name: value.numpy() for name, value in by_ids.items()},
        {k: v.numpy() for k, v in model_outputs(token_model, ids).items()},
    )
    if "start_logits" in served:  # span search sees the same scores everywhere
        for name in ("start_logits", "end_logits"):
            np.testing.assert_allclose(served[name], full[name], atol=1e-5)
            real = inputs["padding_mask"].numpy().sum(axis=1)
            assert np.all(served[name].argmax(axis=1) < real)


def test_length_bucket_must_be_a_positive_integer_or_none(tmp_path, tiny):
    for bad in (0, -16, 16.0, "16", True):
        with pytest.raises(ValueError, match="`length_bucket` must be a positive integer"):
            saved_model(tiny, str(tmp_path / "bad"), length_bucket=bad)
    assert not os.path.exists(tmp_path / "bad")


def test_token_axes_are_the_axes_over_positions():
    backbone = BertBackbone.from_preset(
        "bert_tiny", vocabulary_size=100, return_hidden_states=True, return_attention_scores=True
    )
    assert token_axes(backbone) == {
        "sequence_output": [1],
        "pooled_output": [],
        "hidden_states": [2],  # (num_layers + 1, B, T, hidden_dim)
        "attention_scores": [3, 4],  # (num_layers, B, num_heads, T, T)
    }
    assert token_axes(BertQuestionAnswerer(backbone)) == {"start_logits": [1], "end_logits": [1]}
