"""tfbert.serving.Client against a TF Serving double serving real exports
(TF Serving itself cannot run on these machines: tf_serving_double.py)."""

import json
import os
import time

import numpy as np
import pytest
from tf_serving_double import TFServingDouble

from tfbert.export import model_outputs, saved_model
from tfbert.models import BertBackbone, BertClassifier, TextClassifier
from tfbert.serving import Client, ServingError
from tfbert.text import BertTokenizer

# One worker builds this module's module-scoped fixtures (see tests/conftest.py).
pytestmark = pytest.mark.xdist_group("test_client")

LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, vocabulary_file, rotten_tomatoes):
    """Two versions of a text classifier in a TF Serving model folder, served
    over REST and gRPC."""
    import keras

    keras.utils.set_random_seed(7)
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=24)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    model = TextClassifier(tokenizer, BertClassifier(backbone, 2), LABELS)
    texts = [text for text, _ in rotten_tomatoes[:5]]
    base = tmp_path_factory.mktemp("models")
    saved_model(model, str(base / "sentiment"))  # version 1
    saved_model(model, str(base / "sentiment"))  # version 2
    double = TFServingDouble(str(base), labels={("sentiment", "stable"): 1})
    rest_url, grpc_address = double.start_rest(), double.start_grpc()
    yield model, texts, double, rest_url, grpc_address
    double.stop()


@pytest.fixture(params=["rest", "grpc"])
def client_for(request, served):
    _, _, double, rest_url, grpc_address = served
    double.requests.clear()
    double.fail_next, double.delay = 0, 0.0

    def make(**kwargs):
        kwargs.setdefault("backoff", 0.01)
        if request.param == "rest":
            return Client("sentiment", rest_url=rest_url, **kwargs)
        return Client("sentiment", grpc_address=grpc_address, **kwargs)

    make.protocol = request.param
    return make


def test_raw_text_predictions_match_the_keras_model(served, client_for):
    model, texts, double, _, _ = served
    outputs = client_for().predict({"text": texts})
    expected = model_outputs(model.classifier, model.tokenizer(texts), LABELS)
    np.testing.assert_allclose(outputs["logits"], expected["logits"].numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(outputs["label"], expected["label"].numpy())
    assert outputs["label_name"].tolist() == [LABELS[i] for i in expected["label"].numpy()]
    if client_for.protocol == "rest":
        # TF Serving's columnar request format, to the latest version.
        request = double.requests[-1]
        assert request["path"] == "/v1/models/sentiment:predict"
        assert json.loads(request["raw"]) == {
            "signature_name": "serving_default",
            "inputs": {"text": texts},
        }


def test_token_id_signature_and_versions(served, client_for):
    model, texts, double, _, _ = served
    tokens = {k: v.numpy().tolist() for k, v in model.tokenizer(texts).items()}
    client = client_for(version=1)
    outputs = client.predict(tokens, signature="serve_token_ids")
    expected = model_outputs(model.classifier, model.tokenizer(texts))
    np.testing.assert_allclose(outputs["logits"], expected["logits"].numpy(), atol=1e-5)
    labelled = client_for(version_label="stable").predict({"text": texts[:1]})
    assert labelled["label"].shape == (1,)
    if client_for.protocol == "rest":
        paths = [request["path"] for request in double.requests]
        assert paths[-2:] == [
            "/v1/models/sentiment/versions/1:predict",
            "/v1/models/sentiment/labels/stable:predict",
        ]
    else:
        assert double.requests[-1]["request"].model_spec.version_label == "stable"


def test_status_and_metadata(client_for):
    client = client_for()
    assert client.status() == [
        {"version": v, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
        for v in (1, 2)
    ]
    assert [entry["version"] for entry in client_for(version=1).status()] == [1]
    assert client.wait_until_available(timeout=5) == 1
    signatures = client.metadata()
    assert signatures["serving_default"]["inputs"] == {
        "text": {"dtype": "DT_STRING", "shape": [-1]}
    }
    assert signatures["serve_token_ids"]["inputs"]["token_ids"] == {
        "dtype": "DT_INT32",
        "shape": [-1, -1],
    }
    assert set(signatures["serving_default"]["outputs"]) == {
        "logits",
        "probabilities",
        "label",
        "label_name",
    }


def test_bad_requests_get_the_servers_reason_without_retries(served, client_for):
    _, texts, double, _, _ = served
    with pytest.raises(ServingError, match="Servable not found.*Check the model name") as error:
        client_for(version=9).predict({"text": texts})
    assert error.value.code in (404, "NOT_FOUND")
    assert len(double.requests) == 1  # not retried
    double.requests.clear()
    with pytest.raises(ServingError, match=r"missing \['text'\]") as error:
        client_for().predict({"txt": texts})
    assert error.value.code in (400, "INVALID_ARGUMENT")
    with pytest.raises(
        ServingError, match=r"has shape \[2\], the signature expects \[None, None\]"
    ):
        client_for().predict(
            {"token_ids": [2, 5], "segment_ids": [0, 0], "padding_mask": [1, 1]},
            signature="serve_token_ids",
        )
    with pytest.raises(ServingError, match='"classify" not found'):
        client_for().predict({"text": texts}, signature="classify")
    with pytest.raises(ValueError, match=r"one string; pass a batch \(a list\)"):
        client_for().predict({"text": "one review"})


def test_wrong_dtype_is_refused_by_the_signature(served):
    _, texts, _, rest_url, grpc_address = served
    floats = {"token_ids": [[2.5, 3.0]], "segment_ids": [[0, 0]], "padding_mask": [[1, 1]]}
    with pytest.raises(ServingError, match="token_ids"):
        Client("sentiment", rest_url=rest_url).predict(floats, signature="serve_token_ids")
    with pytest.raises(ServingError, match="Expects arg\\[.\\] to be int32 but float"):
        Client("sentiment", grpc_address=grpc_address).predict(
            {k: np.asarray(v, np.float32) for k, v in floats.items()},
            signature="serve_token_ids",
        )


def test_overloaded_server_is_retried_then_succeeds(served, client_for):
    _, texts, double, _, _ = served
    client = client_for(retries=2)
    client.metadata()  # gRPC clients read the signature once; not counted below
    double.requests.clear()
    double.fail_next = 2
    assert client.predict({"text": texts[:2]})["label"].shape == (2,)
    assert len(double.requests) == 3
    double.requests.clear()
    double.fail_next = 5
    with pytest.raises(ServingError, match=r"(503|UNAVAILABLE).*\(after 3 attempts\)"):
        client.predict({"text": texts[:2]})
    assert len(double.requests) == 3


def test_timeouts_and_unreachable_servers(served, client_for):
    _, texts, double, _, _ = served
    client = client_for(retries=1)
    client.metadata()  # at the default timeout: another test may load the CPU
    client.timeout, double.delay = 0.2, 0.6
    start = time.monotonic()
    with pytest.raises(ServingError, match="after 2 attempts"):
        client.predict({"text": texts[:1]})
    assert time.monotonic() - start < 3
    double.delay = 0.0
    if client_for.protocol == "rest":
        client = Client("sentiment", rest_url="http://127.0.0.1:9", retries=1, backoff=0.01)
        message = "Could not reach TF Serving at http://127.0.0.1:9.*after 2 attempts"
    else:
        client = Client("sentiment", grpc_address="127.0.0.1:9", retries=1, backoff=0.01)
        message = "UNAVAILABLE.*Is TF Serving running at 127.0.0.1:9"
    with pytest.raises(ServingError, match=message):
        client.status()


def test_client_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one of rest_url"):
        Client("m")
    with pytest.raises(ValueError, match="start with http"):
        Client("m", rest_url="localhost:8501")
    with pytest.raises(ValueError, match="`version` or `version_label`, not both"):
        Client("m", rest_url="http://h:8501", version=1, version_label="stable")


def test_the_serving_example_labels_texts(served, capsys):
    import importlib.util

    model, texts, _, rest_url, grpc_address = served
    path = os.path.join(os.path.dirname(__file__), "..", "..", "serving", "examples", "predict.py")
    spec = importlib.util.spec_from_file_location("predict_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    expected = model.predict_labels(texts[:2])
    for where in (["--rest-url", rest_url], ["--grpc-address", grpc_address]):
        assert example.main([*where, texts[0], texts[1]]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in lines] == expected


def test_a_single_output_comes_back_under_its_name(served):
    from tfbert.models import BertTokenClassifier

    model, texts, double, rest_url, grpc_address = served
    tagger = BertTokenClassifier(model.classifier.backbone, num_labels=3)
    saved_model(tagger, os.path.join(double.base_path, "tagger"), tokenizer=model.tokenizer)
    expected = np.asarray(tagger(model.tokenizer(texts[:2]), training=False))
    for client in (
        Client("tagger", rest_url=rest_url),
        Client("tagger", grpc_address=grpc_address),
    ):
        outputs = client.predict({"text": texts[:2]})
        assert list(outputs) == ["logits"]
        np.testing.assert_allclose(outputs["logits"], expected, atol=1e-5)
