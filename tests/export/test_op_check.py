import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from tfbert.export import check_ops, saved_model
from tfbert.export.op_check import read_manifest
from tfbert.models import BertBackbone, BertClassifier, TextClassifier
from tfbert.text import BertTokenizer


def test_the_manifest_is_tensorflow_2_12_with_its_text_ops():
    ops = read_manifest("tf-serving")
    assert len(ops) > 1500
    assert {"FastWordpieceTokenizeWithOffsets", "RegexSplitWithOffsets", "MatMul"} <= ops
    assert "TFText>RoundRobinTrim" not in ops  # added to tensorflow-text after 2.12


def test_an_exported_text_classifier_runs_on_tf_serving_ops(tmp_path, vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=16)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    model = TextClassifier(tokenizer, BertClassifier(backbone, 2), ["negative", "positive"])
    path = saved_model(model, str(tmp_path / "model"), pairs=True)
    needed = check_ops(path, "tf-serving")
    # The tokenizer runs inside the graph: its tensorflow-text ops are there.
    assert "FastWordpieceTokenizeWithOffsets" in needed


def test_an_op_tf_serving_lacks_is_named(tmp_path):
    class Trimmer(tf.Module):
        @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)])
        def trim(self, ids):
            return tf_text.RoundRobinTrimmer(max_seq_length=4).trim([ids, ids])[0].flat_values

    path = str(tmp_path / "trimmer")
    module = Trimmer()
    tf.saved_model.save(module, path, signatures={"serving_default": module.trim})
    with pytest.raises(
        ValueError,
        match=r"needs 1 op\(s\) that tf-serving does not register: "
        r"\['TFText>RoundRobinTrim'\]",
    ):
        check_ops(path, "tf-serving")
    with pytest.raises(ValueError, match="Unknown target 'tfserving'"):
        check_ops(path, "tfserving")
    with pytest.raises(ValueError, match="not a SavedModel folder"):
        check_ops(str(tmp_path), "tf-serving")


def test_onnx_target_names_the_tokenizer_ops_tf2onnx_cannot_convert(tmp_path, vocabulary_file):
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=16)
    backbone = BertBackbone.from_preset("bert_tiny", vocabulary_size=tokenizer.vocabulary_size)
    model = TextClassifier(tokenizer, BertClassifier(backbone, 2), ["negative", "positive"])
    path = saved_model(model, str(tmp_path / "model"))
    needed = check_ops(path, "onnx", signature="serve_token_ids")
    assert {"BatchMatMulV2", "Erfc", "Softmax", "Assert"} <= needed  # Assert: the id range check
    assert "FastWordpieceTokenizeWithOffsets" not in needed
    with pytest.raises(ValueError, match="tf2onnx cannot convert at opset 17") as error:
        check_ops(path, "onnx")
    assert "FastWordpieceTokenizeWithOffsets" in str(error.value)
    assert "StaticRegexReplace" in str(error.value)
    assert "BatchMatMulV2" not in str(error.value)
    with pytest.raises(ValueError, match=r"no signature 'serve_ids'; it has \["):
        check_ops(path, "onnx", signature="serve_ids")


def test_litert_target_accepts_tensorflow_text_ops_and_names_others(tmp_path):
    assert {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets"} <= read_manifest("litert")

    class Cleaner(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1], tf.string)])
        def clean(self, text):
            return tf.strings.regex_replace(text, "[0-9]", "#")

    module = Cleaner()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.clean.get_concrete_function()], module
    )
    converter.allow_custom_ops = True
    path = tmp_path / "cleaner.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(
        ValueError, match=r"neither LiteRT nor tensorflow-text's registrar provides: \['Static"
    ):
        check_ops(str(path), "litert")
    with pytest.raises(ValueError, match="checks a .tflite file"):
        check_ops(str(tmp_path), "litert")
