"""Each verifier passes the model an artifact was exported from and names
the failed check, the artifact and the numbers for any other model."""

import re
import shutil
import sys

import pytest

from tfbert.export import (
    VerificationError,
    litert,
    verify_litert,
    verify_onnx,
    verify_saved_model,
)
from tfbert.models import TextClassifier


@pytest.fixture(scope="module")
def flipped(tiny):
    """`tiny` with its logits negated: other weights, every label flipped."""
    classifier = tiny.classifier
    copy = type(classifier).from_config(classifier.get_config())
    copy.set_weights(classifier.get_weights())
    kernel, bias = copy.get_layer("logits").get_weights()
    copy.get_layer("logits").set_weights([-kernel, -bias])
    return TextClassifier(tiny.tokenizer, copy, tiny.label_names)


VERIFIERS = {
    "model/1": verify_saved_model,
    "model.onnx": verify_onnx,
    "model.tflite": verify_litert,
}
NAMES = {"model/1": "SavedModel", "model.onnx": "ONNX file", "model.tflite": "LiteRT file"}


@pytest.mark.parametrize("artifact", list(VERIFIERS))
@pytest.mark.xdist_group("tiny_exports")
def test_another_models_weights_fail_the_output_check(tiny_exports, tiny, flipped, artifact):
    folder, reports, sentences = tiny_exports
    path = str(folder / artifact)
    verify = VERIFIERS[artifact]
    # export_artifacts ran the same verifier against `tiny` on these sentences.
    (report,) = [report for report in reports if report["artifact"] == path]
    assert report["max_abs_diff"] < 1e-4 and report["label_agreement"] == 1.0

    with pytest.raises(VerificationError) as error:
        verify(path, flipped, sentences)
    message = str(error.value)
    print(f"{type(error.value).__name__}: {message}")
    assert isinstance(error.value, ValueError)
    assert message.startswith(f"{NAMES[artifact]} {path}")
    assert "fails the output check: it differs from the Keras model by up to" in message
    worst = float(re.search(r"by up to ([\d.e+-]+) \(allowed", message).group(1))
    assert worst > 1e-2  # negated logits: at least twice the smallest |logit|
    assert "Export it again from the model you verify against" in message


@pytest.mark.xdist_group("tiny_exports")
def test_a_quantized_litert_model_is_held_to_label_agreement(
    tmp_path, tiny, flipped, tiny_exports
):
    sentences = tiny_exports[2]
    path = litert(tiny, str(tmp_path / "int8.tflite"), quantization="dynamic_int8")
    report = verify_litert(path, tiny, sentences)
    assert report["label_agreement"] >= 0.96 and report["max_abs_diff"] < 0.5

    with pytest.raises(VerificationError) as error:
        verify_litert(path, flipped, sentences)
    print(f"{type(error.value).__name__}: {error.value}")
    assert re.match(
        rf"LiteRT file {re.escape(path)} \(dynamic_int8\) fails the label check: "
        r"0 of 16 labels \(0\.0%\) equal the Keras model's, below the required 96\.0%",
        str(error.value),
    )
    # The bar can be set; the values are checked when atol is given.
    verify_litert(path, flipped, sentences, min_label_agreement=0.0)
    with pytest.raises(VerificationError, match=r"\(dynamic_int8\) fails the output check"):
        verify_litert(path, flipped, sentences, atol=1e-3, min_label_agreement=0.0)


@pytest.mark.xdist_group("tiny_exports")
def test_a_litert_file_without_its_metadata_is_refused(tmp_path, tiny, tiny_exports):
    folder, _, sentences = tiny_exports
    shutil.copy(folder / "model.tflite", tmp_path / "model.tflite")
    with pytest.raises(ValueError, match=r"model\.tflite\.json is missing; verify_litert reads"):
        verify_litert(str(tmp_path / "model.tflite"), tiny, sentences)


@pytest.mark.xdist_group("tiny_exports")
def test_reports_give_size_and_batch_1_latency_when_asked(tiny_exports, tiny):
    folder, _, sentences = tiny_exports
    report = verify_onnx(str(folder / "model.onnx"), tiny, sentences[:4], latency_repeats=3)
    assert report["size"] == (folder / "model.onnx").stat().st_size
    assert report["batch1_ms"] > 0 and report["requests"] == 4
    assert verify_onnx(str(folder / "model.onnx"), tiny, sentences[:4])["batch1_ms"] is None


@pytest.mark.xdist_group("tiny_exports")
def test_a_saved_model_without_serve_token_ids_fails_the_signature_check(
    tmp_path, tiny, tiny_exports
):
    from tfbert.export.saved_model import read_saved_model

    folder, _, sentences = tiny_exports
    path = tmp_path / "1"
    shutil.copytree(folder / "model" / "1", path)
    proto = read_saved_model(str(path))
    del proto.meta_graphs[0].signature_def["serve_token_ids"]
    (path / "saved_model.pb").write_bytes(proto.SerializeToString())
    with pytest.raises(VerificationError) as error:
        verify_saved_model(str(path), tiny, sentences)
    assert str(error.value) == (
        f"SavedModel {path} fails the signature check: it has no 'serve_token_ids' signature "
        "(export it with tfbert.export.saved_model); it has ['__saved_model_init_op', "
        "'serving_default']."
    )


@pytest.mark.xdist_group("tiny_exports")
def test_the_tensorflow_only_process_survives_errors_and_is_restarted_if_killed(
    tmp_path, tiny_exports, tiny
):
    """`verify_saved_model` keeps one TensorFlow-only child for all checks: a
    model that fails to load is reported and the child serves on; a killed
    child is replaced by a new one on the next check."""
    from tfbert.export.verify import _server, run_saved_model

    folder, _, sentences = tiny_exports
    path = str(folder / "model/1")
    verify_saved_model(path, tiny, sentences[:2])
    child = _server._child
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    (broken / "saved_model.pb").write_bytes(b"not a graph")
    with pytest.raises(
        RuntimeError, match=r"broken in a separate process failed:\n(.|\n)*saved_model.pb"
    ):
        run_saved_model(str(broken), [("serving_default", {"text": ["good"]})])
    assert _server._child is child and child.poll() is None
    [outputs] = run_saved_model(path, [("serving_default", {"text": ["good"]})])
    assert outputs["label"].shape == (1,)
    child.kill()
    child.wait()
    report = verify_saved_model(path, tiny, sentences[:2])
    assert report["max_abs_diff"] < 1e-5
    assert _server._child is not child and _server._child.poll() is None


@pytest.mark.xdist_group("tiny_exports")
def test_what_a_served_model_prints_to_stdout_is_not_taken_for_an_answer(tmp_path):
    """A SavedModel whose graph prints to stdout (C++ std::cout, file
    descriptor 1) is served like any other: answers travel on a private pipe."""
    import tensorflow as tf

    from tfbert.export.verify import run_saved_model

    class Printing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
        def serve(self, x):
            tf.print('{"id": 1, "error": null}', output_stream=sys.stdout)
            tf.print("3", output_stream=sys.stdout)
            return {"twice": 2 * x}

    module = Printing()
    path = str(tmp_path / "printing")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    for _ in range(2):
        [outputs] = run_saved_model(path, [("serving_default", {"x": [1, 2]})])
        assert outputs["twice"].tolist() == [2, 4]
