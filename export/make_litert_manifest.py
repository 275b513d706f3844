"""Writes tfbert/export/manifests/litert-tftext-ops.txt (package data read by
`tfbert.export.check_ops`): the custom ops that tensorflow-text's
LiteRT registrar (`tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS`) runs.

For each tensorflow-text function with LiteRT kernels it converts a tiny
model, reads the custom op names out of the .tflite file, and keeps a name
only if the model fails to load without the registrar and runs with it.
Rebuild with the project's environment:

    .venv/bin/python export/make_litert_manifest.py
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
from ai_edge_litert.interpreter import Interpreter, InterpreterWithCustomOps

from tfbert.export.litert import custom_ops

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "good", "film", "##s", "!"]
SENTENCES = tf.TensorSpec((1,), tf.string)
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST_DIR = os.path.join(REPOSITORY, "tfbert", "export", "manifests")


def fast_bert(text):
    tokenizer = tf_text.FastBertTokenizer(VOCABULARY, token_out_type=tf.int32)
    return tokenizer.tokenize(text).flat_values


def wordpiece_detokenize(ids):
    tokenizer = tf_text.FastWordpieceTokenizer(VOCABULARY, support_detokenization=True)
    return tokenizer.detokenize(tf.RaggedTensor.from_tensor(ids))


def whitespace(text):
    return tf_text.WhitespaceTokenizer().tokenize(text).flat_values


def byte_split(text):
    return tf_text.ByteSplitter().split(text).flat_values


def ngrams(text):
    words = tf_text.WhitespaceTokenizer().tokenize(text)
    return tf_text.ngrams(words, 2, reduction_type=tf_text.Reduction.STRING_JOIN).flat_values


def ragged_to_tensor(text):
    tokenizer = tf_text.FastBertTokenizer(VOCABULARY, token_out_type=tf.int32)
    return tokenizer.tokenize(text).to_tensor(0)


MODELS = [
    (fast_bert, SENTENCES, np.array(["A good films!"])),
    (wordpiece_detokenize, tf.TensorSpec((1, 3), tf.int32), np.array([[4, 5, 6]], np.int32)),
    (whitespace, SENTENCES, np.array(["a good film"])),
    (byte_split, SENTENCES, np.array(["film"])),
    (ngrams, SENTENCES, np.array(["a good film"])),
    (ragged_to_tensor, SENTENCES, np.array(["a good film"])),
]


def main():
    names = set()
    for function, spec, example in MODELS:
        module = tf.Module()
        module.run = tf.function(function, input_signature=[spec])
        concrete = module.run.get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
        converter.allow_custom_ops = True
        flatbuffer = converter.convert()
        ops = custom_ops(flatbuffer)
        try:
            Interpreter(model_content=flatbuffer).allocate_tensors()
            raise RuntimeError(f"{function.__name__}: {ops} load without the registrar")
        except RuntimeError as error:
            if "without the registrar" in str(error):
                raise
        interpreter = InterpreterWithCustomOps(
            model_content=flatbuffer,
            custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS,
        )
        runner = interpreter.get_signature_runner()
        runner(**{name: example for name in runner.get_input_details()})
        print(f"{function.__name__}: {sorted(ops)}")
        names |= ops
    path = os.path.join(MANIFEST_DIR, "litert-tftext-ops.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            f"# LiteRT custom ops run by tensorflow-text {tf_text.__version__}'s registrar\n"
            "# (tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS; on phones, the TF Text ops\n"
            "# library). Written by export/make_litert_manifest.py (see its docstring).\n"
            "# tfbert.export.check_ops(model_tflite, 'litert') fails on any other custom op.\n"
        )
        f.write("\n".join(sorted(names)) + "\n")
    print(f"{len(names)} ops -> {path}")


if __name__ == "__main__":
    main()
