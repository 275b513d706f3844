"""LiteRT (TFLite) export for phones: float32, float16, dynamic-range int8 or
mixed int8, optionally with the tokenizer inside.

path = litert(text_classifier, "sentiment.tflite", quantization="dynamic_int8")
# inputs token_ids/segment_ids/padding_mask (1, 128) int32 -> logits, probabilities, label
path = litert(text_classifier, "sentiment.tflite", include_tokenizer=True)
# input text (1,) string; the app links tensorflow-text's TFLite ops
"""

import contextlib
import json
import os
import re
import tempfile

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfbert.export.saved_model import TOKEN_INPUTS, model_outputs, prepare, signature_io
from tfbert.files import atomic_path
from tfbert.text.bert_tokenizer import kept_lengths, pack_segments

QUANTIZATIONS = (None, "float16", "dynamic_int8", "int8")
# "int8" runs these op types with 8-bit inputs and weights. Everything else
# (LayerNorm, softmax, GELU, residual adds, attention's two batched matmuls)
# stays float: in 8 bits each of them cost a fine-tuned MiniLM 5-20 points of
# label agreement (measured with tf.lite.experimental.QuantizationDebugger).
INT8_OPS = ("FULLY_CONNECTED", "GATHER")
# Dense layers kept float under "int8": the feed-forward down-projection reads
# GELU outputs whose few outlier channels swamp one int8 scale (92.6% label
# agreement with it in int8, 98.1% without).
FLOAT_LAYERS = ("output_dense",)


def litert(
    model,
    path: str,
    quantization: str | None = None,
    representative_data=None,
    include_tokenizer: bool = False,
    sequence_length: int = 128,
    tokenizer=None,
    label_names=None,
    float_layers=FLOAT_LAYERS,
    pairs: bool = False,
    overwrite: bool = False,
) -> str:
    """Writes `model` as a `.tflite` file for batch-1 inference; returns `path`.

    Inputs are int32 `token_ids`, `segment_ids`, `padding_mask` of shape
    (1, sequence_length); with `include_tokenizer`, a string `text` of shape
    (1,) (and `text_pair` with `pairs`). Beside the model, `<path>.json`
    holds what a mobile app needs: input and output names and shapes, label
    names and the label file (`<name>.labels.txt`, one per line), casing, the
    vocabulary file (`vocab.txt`) and the custom ops to register.

    Args:
        model: a built tfbert backbone, `BertClassifier` or `TextClassifier`.
        path: str ending in ".tflite". It and its `.json` and label file are
            kept unless `overwrite`; a folder's `vocab.txt` is shared and
            never replaced. Each file appears complete or not at all
            (written beside it and renamed), the model last.
        quantization: None (float32), "float16" (half-precision weights),
            "dynamic_int8" (int8 weights, float activations) or "int8"
            (8-bit weights and activations for the dense layers and the
            embedding lookup, calibrated on `representative_data`; the rest
            stays float, see `INT8_OPS`). On a fine-tuned MiniLM, 1,000
            held-out sentences: float16 100%, dynamic_int8 99.2%, int8 98.1%
            of the float model's labels.
        representative_data: for "int8": an iterable of token-id dicts
            (`token_ids`, `segment_ids`, `padding_mask`, batch 1); a few
            hundred tokenized training texts.
        include_tokenizer: bool, default False. Put the tokenizer in the
            model (tensorflow-text's `FastBertTokenizer`, which has LiteRT
            kernels): the app passes raw text and registers tensorflow-text's
            ops (`tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS` in
            Python; the TF Text ops library on Android/iOS). It splits text
            like `BertTokenizer` except for rare control characters (U+0085
            counts as a space): 2,997 of 3,000 Rotten Tomatoes sentences get
            identical ids.
        sequence_length: int, default 128. The fixed input length.
        tokenizer: `BertTokenizer`; taken from a `TextClassifier`.
        label_names: optional class names for the metadata.
        float_layers: names of dense layers kept float under "int8"
            (default: the feed-forward output projections); () for none.
        pairs: bool, default False. With `include_tokenizer`, take text pairs.
        overwrite: bool, default False. Replace an existing model, metadata
            and label file at `path`.
    """
    model, tokenizer, label_names = prepare(model, tokenizer, label_names)
    _check_request(
        path,
        quantization,
        representative_data,
        include_tokenizer,
        tokenizer,
        label_names,
        overwrite,
    )
    vocabulary_text = _vocabulary_text(path, tokenizer)
    if include_tokenizer:
        names = ("text", "text_pair") if pairs else ("text",)
        inputs = {name: {"dtype": "string", "shape": [1]} for name in names}
    else:
        inputs = {name: {"dtype": "int32", "shape": [1, sequence_length]} for name in TOKEN_INPUTS}
    flatbuffer, output_names = _convert(
        model,
        inputs,
        mobile_tokenizer(tokenizer, sequence_length) if include_tokenizer else None,
        quantization,
        representative_data,
        float_layers,
    )
    metadata = {
        "inputs": inputs,
        "outputs": output_names,
        "sequence_length": sequence_length,
        "quantization": quantization or "float32",
        "label_names": list(label_names) if label_names else None,
        "tokenizer_inside": include_tokenizer,
        "custom_ops": sorted(custom_ops(flatbuffer)),
        "vocabulary": None,
    }
    _write_with_sidecars(path, flatbuffer, metadata, tokenizer, vocabulary_text, overwrite)
    return path


def _labels_path(path: str) -> str:
    return path[: -len(".tflite")] + ".labels.txt"


def _check_request(
    path, quantization, representative_data, include_tokenizer, tokenizer, label_names, overwrite
) -> None:
    """Refuses, before any work, what `litert` cannot do or would overwrite."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}; use one of {QUANTIZATIONS}.")
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' calibrates activation ranges on real inputs: pass "
            "representative_data (an iterable of token-id dicts, e.g. a few hundred "
            "tokenized training texts), or use 'dynamic_int8', which needs none."
        )
    if quantization == "int8" and include_tokenizer:
        raise ValueError(
            "quantization='int8' cannot calibrate through the tokenizer's "
            "tensorflow-text ops: export int8 with token ids in "
            "(include_tokenizer=False), or use 'dynamic_int8' with the tokenizer."
        )
    if include_tokenizer and tokenizer is None:
        raise ValueError(
            "include_tokenizer=True needs the tokenizer: pass tokenizer= or export a "
            "TextClassifier."
        )
    if not path.endswith(".tflite"):
        raise ValueError(f"LiteRT files end in .tflite; received {path!r}.")
    if not overwrite:
        written = [path, path + ".json"] + ([_labels_path(path)] if label_names else [])
        for existing in written:
            if os.path.exists(existing):
                raise FileExistsError(
                    f"{existing} exists; pass overwrite=True or choose another path."
                )


def _vocabulary_text(path: str, tokenizer) -> str | None:
    """The `vocab.txt` content for `tokenizer`; refuses a folder whose
    `vocab.txt` holds another vocabulary."""
    if tokenizer is None:
        return None
    text = "\n".join(tokenizer.vocabulary) + "\n"
    vocabulary_file = os.path.join(os.path.dirname(os.path.abspath(path)), "vocab.txt")
    if os.path.exists(vocabulary_file):
        with open(vocabulary_file, encoding="utf-8") as f:
            if f.read() != text:
                raise FileExistsError(
                    f"{vocabulary_file} holds another vocabulary than this model's "
                    "tokenizer; export to another folder (each folder has one vocab.txt)."
                )
    return text


@contextlib.contextmanager
def _converter(model, serve, signature):
    """(LiteRT converter, SavedModel folder) for `serve(inputs)` on `model`'s weights.

    Through a SavedModel, as Keras' own LiteRT export does: the converter
    then sees the model's variables as constants to fold in.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[signature])
    with tempfile.TemporaryDirectory(prefix="tfbert-litert-") as saved:
        archive.write_out(saved, verbose=False)
        yield tf.lite.TFLiteConverter.from_saved_model(saved), saved


def _convert(model, inputs, pack, quantization, representative_data, float_layers):
    """(flatbuffer, sorted output names) of `model` behind the `inputs`
    signature (metadata form); `pack` turns string inputs into token ids."""
    signature = {
        name: tf.TensorSpec(spec["shape"], tf.as_dtype(spec["dtype"]), name=name)
        for name, spec in inputs.items()
    }

    def serve(features):
        if pack is not None:
            features = pack(*(features[name] for name in inputs))
        outputs = model_outputs(model, features)
        return {name: value for name, value in outputs.items() if value.dtype != tf.string}

    with _converter(model, serve, signature) as (converter, saved):
        converter.allow_custom_ops = pack is not None
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":

            def calibration():
                for example in representative_data:
                    yield {name: np.asarray(example[name], np.int32) for name in TOKEN_INPUTS}

            converter.representative_dataset = calibration
            flatbuffer = _mixed_int8(converter, float_layers)
        else:
            flatbuffer = converter.convert()
        output_names = signature_io(saved)["serving_default"]["outputs"]
    return flatbuffer, output_names


def _write_with_sidecars(path, flatbuffer, metadata, tokenizer, vocabulary_text, overwrite):
    """Writes the model, `<path>.json`, the label file and (when the folder
    has none) `vocab.txt`, each staged and renamed; the model is renamed
    last, so an app that finds it finds its sidecars."""
    files = {path: flatbuffer}
    label_names = metadata["label_names"]
    if label_names:
        # One class name per line, line i for label i: what Android's and
        # iOS' text-classification samples read.
        labels = _labels_path(path)
        files[labels] = ("\n".join(str(name) for name in label_names) + "\n").encode()
        metadata["label_file"] = os.path.basename(labels)
    shared = set()
    if tokenizer is not None:
        vocabulary_file = os.path.join(os.path.dirname(os.path.abspath(path)), "vocab.txt")
        if not os.path.exists(vocabulary_file):  # else it holds this vocabulary
            files[vocabulary_file] = vocabulary_text.encode()
            shared.add(vocabulary_file)
        metadata["vocabulary"] = "vocab.txt"
        metadata["lowercase"] = tokenizer.lowercase
    files[path + ".json"] = json.dumps(metadata, indent=2).encode()
    with contextlib.ExitStack() as stack:  # renames in reverse order: the model last
        for target, content in files.items():
            replace = overwrite and target not in shared
            staging = stack.enter_context(atomic_path(target, overwrite=replace))
            with open(staging, "wb") as f:
                f.write(content)


def mobile_tokenizer(tokenizer, sequence_length: int):
    """A function packing (1,) strings (and pairs) into token-id dicts of
    shape (1, sequence_length), with ops LiteRT can run: tensorflow-text's
    `FastBertTokenizer` and core slicing/padding, the truncation rule of
    `BertTokenizer`."""
    if tokenizer.special_tokens_in_strings:
        raise ValueError(
            "include_tokenizer=True cannot find special tokens in text on LiteRT; "
            "build the tokenizer with special_tokens_in_strings=False."
        )
    if tokenizer.strip_accents not in (None, tokenizer.lowercase):
        raise ValueError(
            "LiteRT's tokenizer strips accents exactly when it lower-cases; this "
            f"tokenizer has lowercase={tokenizer.lowercase}, strip_accents="
            f"{tokenizer.strip_accents}. Export with include_tokenizer=False."
        )
    fast = tf_text.FastBertTokenizer(
        vocab=list(tokenizer.vocabulary),
        suffix_indicator="##",
        max_bytes_per_word=4 * tokenizer.max_word_length,
        token_out_type=tf.int32,
        unknown_token="[UNK]",
        lower_case_nfd_strip_accents=tokenizer.lowercase,
        support_detokenization=False,
    )

    def pack(*texts):
        segments = [fast.tokenize(text).flat_values for text in texts]
        budget = sequence_length - 1 - len(segments)
        keep = kept_lengths([tf.shape(segment)[0] for segment in segments], budget)
        # One dense row (1, pieces) per segment: no ragged ops, which LiteRT lacks.
        return pack_segments(
            [segment[None, :limit] for segment, limit in zip(segments, keep, strict=True)],
            sequence_length,
            cls_id=tokenizer.cls_token_id,
            sep_id=tokenizer.sep_token_id,
            pad_id=tokenizer.pad_token_id,
        )

    return pack


def _operators(flatbuffer: bytes):
    """(op type, first output tensor name) of every op of a .tflite model."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    builtin_names = {
        value: name for name, value in vars(schema.BuiltinOperator).items() if name.isupper()
    }
    codes = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(code.CustomCode().decode())
        else:
            codes.append(builtin_names[builtin])
    operators = []
    for graph_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(graph_index)
        for op_index in range(graph.OperatorsLength()):
            op = graph.Operators(op_index)
            output = graph.Tensors(op.Outputs(0)).Name().decode() if op.OutputsLength() else ""
            operators.append((codes[op.OpcodeIndex()], output))
    return operators


def custom_ops(flatbuffer: bytes) -> set[str]:
    """The custom (non-builtin) ops a .tflite model needs registered."""
    from ai_edge_litert import schema_py_generated as schema

    builtin = {name for name in vars(schema.BuiltinOperator) if name.isupper()}
    return {op for op, _ in _operators(flatbuffer) if op not in builtin}


def _mixed_int8(converter, float_layers) -> bytes:
    """Calibrates once, then quantizes only `INT8_OPS`, except dense layers
    named in `float_layers`."""
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter)
    operators = _operators(debugger.calibrated_model)
    denied_ops = sorted({op for op, _ in operators} - set(INT8_OPS))
    denied_nodes = []
    for layer in float_layers:
        pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
        matches = [name for op, name in operators if op in INT8_OPS and pattern.search(name)]
        if not matches:
            dense = sorted(
                {
                    re.sub(r"_\d+$", "", name.split(";")[0].split("/")[-2])
                    for op, name in operators
                    if op == "FULLY_CONNECTED" and "/" in name.split(";")[0]
                }
            )
            raise ValueError(
                f"float_layers names {layer!r}, which is no dense layer of this model; "
                f"its dense layers are {dense}."
            )
        denied_nodes += matches
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=denied_ops, denylisted_nodes=denied_nodes
    )
    return debugger.get_nondebug_quantized_model()


def interpreter(path: str, num_threads: int | None = None):
    """ai_edge_litert's interpreter for the `.tflite` file at `path`, with
    tensorflow-text's LiteRT ops registered (needed when the tokenizer is
    inside, harmless otherwise)."""
    from ai_edge_litert.interpreter import InterpreterWithCustomOps

    return InterpreterWithCustomOps(
        model_path=path,
        custom_op_registerers=tf_text.tflite_registrar.SELECT_TFTEXT_OPS,
        num_threads=num_threads,
    )


def run_litert(path: str, inputs) -> dict:
    """Outputs of the `.tflite` model at `path` for a batch, one example at a
    time, with ai_edge_litert's interpreter (tensorflow-text's ops registered
    when the tokenizer is inside).

    Args:
        inputs: token-id dict of (N, L) arrays; for a model with the
            tokenizer inside, a list of N strings or {"text": [...],
            "text_pair": [...]}.
    """
    runner = interpreter(path).get_signature_runner()
    if isinstance(inputs, list | tuple):
        inputs = {"text": inputs}
    expected = set(runner.get_input_details())
    if set(inputs) != expected:
        raise ValueError(f"{path} takes inputs {sorted(expected)}; received {sorted(inputs)}.")
    string_inputs = any(
        details["dtype"] == np.bytes_ for details in runner.get_input_details().values()
    )
    results = {}
    for index in range(len(next(iter(inputs.values())))):
        if string_inputs:
            feed = {
                name: np.array([values[index]], dtype=object) for name, values in inputs.items()
            }
        else:
            feed = {
                name: np.asarray(values[index : index + 1], np.int32)
                for name, values in inputs.items()
            }
        for name, value in runner(**feed).items():
            results.setdefault(name, []).append(value[0])
    return {name: np.stack(values) for name, values in results.items()}


def translator_litert(translator, path: str, source_length: int = 32, overwrite: bool = False):
    """A `Translator`'s whole decoding loop as a `.tflite` file; returns `path`.

    Input: `encoder_token_ids` and `encoder_padding_mask`, int32 (1,
    source_length): the source's word pieces then `[SEP]`, zero-padded
    (`Translator.encode` shapes them; on a phone, the tokenizer of the
    model's `vocab.txt`). Output: `token_ids` (1, max_length) int32, the
    start token, the output pieces, `[SEP]`, then padding, equal to
    `Translator.model.generate` with the translator's sampler (tested for
    greedy and beam search). The encoder, the key/value-cached decoder steps
    and the search are one `WHILE` loop of LiteRT builtin ops: no custom or
    TensorFlow ops to link. The app detokenizes (join pieces, drop "##").

    Args:
        translator: a `tfbert.models.Translator`.
        path: str ending in ".tflite"; kept unless `overwrite`.
        source_length: int, default 32. The fixed source length, at most
            the translator's `max_source_length`.
    """
    from tfbert.export.saved_model import float32_copy

    if not path.endswith(".tflite"):
        raise ValueError(f"`path` must end in '.tflite'; received {path!r}.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    if not isinstance(source_length, int) or not 2 <= source_length <= (
        translator.max_source_length
    ):
        raise ValueError(
            "`source_length` must be an integer in [2, max_source_length="
            f"{translator.max_source_length}]; received {source_length!r}."
        )
    model = float32_copy(translator.model)
    names = ("encoder_token_ids", "encoder_padding_mask")
    signature = {name: tf.TensorSpec((1, source_length), tf.int32, name=name) for name in names}

    def serve(inputs):
        ids = model.generate_tokens(inputs, translator.max_length, translator.sampler)
        return {"token_ids": ids}

    with _converter(model, serve, signature) as (converter, _):
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # the converter raises its own ConverterError
            raise ValueError(
                f"The decoding loop with sampler {type(translator.sampler).__name__} does "
                "not convert to LiteRT builtin ops: use sampler='greedy' or 'beam'. "
                f"Converter: {str(error)[-500:]}"
            ) from error
    with atomic_path(path, overwrite=overwrite) as staging:
        with open(staging, "wb") as f:
            f.write(flatbuffer)
    return path
