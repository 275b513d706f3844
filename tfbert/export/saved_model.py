"""TF Serving SavedModels of tfbert models, tokenizer inside.

path = saved_model(text_classifier, "exports/sentiment")   # exports/sentiment/1
# serving_default: {"text": ["a gem"]} -> logits, probabilities, label, label_name
#   (the model runs at the request's longest text rounded up to 16 tokens)
# serve_token_ids: {"token_ids", "segment_ids", "padding_mask"} -> the same
path = saved_model(translator, "exports/de-en")
# serving_default: {"text": ["Ich habe keine Ahnung."]} -> output_text, token_ids
"""

import os

import keras
import tensorflow as tf

from tfbert.files import atomic_path
from tfbert.models import BertClassifier, BertQuestionAnswerer, TextClassifier, Translator
from tfbert.models.bert.vocabulary_check import check_vocabulary, model_vocabulary_size

TOKEN_INPUTS = ("token_ids", "segment_ids", "padding_mask")

# What BertQuestionAnswerer adds to its start/end logits at padding.
MASKED_LOGIT = -1e9


def _versions(export_dir: str) -> list[int]:
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir) if name.isdigit())


def _new_version_path(export_dir: str, version: int | None) -> str:
    """`export_dir/<version>`, the next free version when None; refuses one that exists."""
    if version is None:
        version = (_versions(export_dir) or [0])[-1] + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"`version` must be a non-negative integer; received {version!r}.")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(
            f"{final} already exists; TF Serving versions are immutable. Export to a "
            "new version (leave version=None for the next free number)."
        )
    return final


def _translator_saved_model(translator: Translator, final: str) -> str:
    """A `Translator` as a SavedModel: `serving_default` takes {"text": (B,)
    strings} and returns {"output_text": (B,) strings, "token_ids": (B, L)
    int32}, with tokenization, the decoding loop and detokenization in the
    graph (no XLA: TF Serving's stock CPU build does not compile it)."""
    if computes_in_low_precision(translator.model):
        translator = Translator(
            translator.tokenizer,
            float32_copy(translator.model),
            translator.max_source_length,
            translator.max_length,
            translator.sampler,
        )
    archive = keras.export.ExportArchive()
    archive.track(translator.tokenizer)

    def serve_text(inputs):
        return translator.serve(inputs["text"])

    archive.add_endpoint(
        "serving_default",
        serve_text,
        input_signature=[{"text": tf.TensorSpec((None,), tf.string, name="text")}],
    )
    with atomic_path(final, overwrite=False) as staging:
        archive.write_out(staging, verbose=False)
    return final


def prepare(model, tokenizer=None, label_names=None):
    """What every exporter starts from: `(float32 model, tokenizer, label
    names)`, a `TextClassifier` unwrapped into its parts, after checking that
    the model is built and the tokenizer fits its vocabulary."""
    if isinstance(model, TextClassifier):
        tokenizer = tokenizer or model.tokenizer
        label_names = label_names or model.label_names
        model = model.classifier
    if not model.built:
        raise ValueError(
            f"{type(model).__name__} is not built; call it on a batch (or train it) "
            "before exporting."
        )
    check_vocabulary(tokenizer, model)
    return float32_copy(model), tokenizer, label_names


def computes_in_low_precision(model) -> bool:
    layers = model._flatten_layers(include_self=True, recursive=True)
    return any(layer.dtype_policy.compute_dtype != "float32" for layer in layers)


def float32_copy(model):
    """`model` itself when it computes in float32, else a float32 copy with
    the same weights (mixed-precision models keep float32 weights anyway).

    Exports are float32: TF Serving on most CPUs, ONNX Runtime and LiteRT
    run it best, and LiteRT makes its own float16/int8 versions from it.
    """
    if not computes_in_low_precision(model):
        return model

    def to_float32(node):
        if isinstance(node, dict):
            if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return "float32"
            return {key: to_float32(value) for key, value in node.items()}
        if isinstance(node, list):
            return [to_float32(value) for value in node]
        return node

    config = to_float32(keras.saving.serialize_keras_object(model))
    config.pop("compile_config", None)  # an export needs no optimizer
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def model_outputs(model, token_inputs, label_names=None) -> dict:
    """What every export of `model` returns for a token-id dict: the model's
    named outputs (`logits` for a bare tensor) in float32 and, for a
    `BertClassifier`, `probabilities`, `label` (int32) and, with
    `label_names`, `label_name` (strings). The reference that verification
    compares each runtime with."""
    outputs = model(token_inputs, training=False)
    if not isinstance(outputs, dict):
        outputs = {"logits": outputs}
    outputs = {name: tf.cast(value, tf.float32) for name, value in outputs.items()}
    if isinstance(model, BertClassifier):
        logits = outputs["logits"]
        outputs["probabilities"] = tf.nn.softmax(logits, axis=-1)
        outputs["label"] = tf.argmax(logits, axis=-1, output_type=tf.int32)
        if label_names:
            outputs["label_name"] = tf.gather(tf.constant(label_names), outputs["label"])
    return outputs


def saved_model(
    model,
    export_dir: str,
    tokenizer=None,
    version: int | None = None,
    pairs: bool = False,
    label_names=None,
    length_bucket: int | None = 16,
) -> str:
    """Writes `model` as a TF Serving SavedModel in `export_dir/<version>/`.

    Signatures:
        serving_default: raw strings in (`text`, and `text_pair` with
            `pairs=True`), tokenized inside the graph by `tokenizer`; without
            a tokenizer it is `serve_token_ids`. With `length_bucket`, the
            model runs only on the request's first `bucketed_length` token
            positions (its longest text rounded up to a multiple of
            `length_bucket`), and per-token outputs are padded back to the
            tokenizer's `sequence_length`: before the bucket's end they
            equal the fixed-length model's (1e-5), real tokens and padding
            alike; past it they hold
            `MASKED_LOGIT` (-1e9) in a `BertQuestionAnswerer`'s
            `start_logits`/`end_logits`, as the model itself puts at padding
            (span search, top-k and softmax over positions never pick them),
            and 0 in every other per-token output (`sequence_output`, token
            classifier `logits`), which clients read at real tokens only.
        serve_token_ids: `token_ids`, `segment_ids`, `padding_mask`, int32
            (batch, length), any batch size and length up to the model's
            `max_sequence_length`. With `length_bucket` it too runs only on
            the first `bucketed_length` positions (the columns after the
            last real token of every row are padding and change no real
            output), so ids a client pads to a fixed length cost what
            their real length costs; per-token outputs come back at the
            request's length, filled past the bucket as above. Token
            ids outside [0, vocabulary size) fail the request with
            `InvalidArgumentError` ("token_ids must be in [0, V): the
            model has V tokens; ...", HTTP 400 on TF Serving) on every
            device, instead of an embedding-lookup error on CPU and silent
            zero vectors on GPU.
    Mixed-precision models are exported in float32 (`float32_copy`).
    Outputs: a backbone gives `sequence_output` and `pooled_output`; a
    classifier `logits`, `probabilities`, `label` (and `label_name` with
    label names); other task models their named outputs.

    Args:
        model: `BertBackbone`, `BertClassifier`, `TextClassifier` (its
            tokenizer and label names are used), another backbone model, or
            a `Translator` (strings in, strings out; see
            `_translator_saved_model`; the other arguments but `version` do
            not apply).
        export_dir: str. The model's folder in TF Serving's model base path.
        tokenizer: `BertTokenizer` or None.
        version: int or None. Default: one more than the highest existing
            version. An existing version is never overwritten; the version
            appears complete or not at all (written beside it and renamed).
        pairs: bool, default False. `serving_default` takes text pairs.
        label_names: list of str or None, for classifiers.
        length_bucket: int or None, default 16. Both signatures run the
            model at a multiple of this many tokens; None runs it at the
            full length (the tokenizer's `sequence_length`, the request's
            for token ids; slower on short texts).

    Returns:
        The path of the written version folder.
    """
    if length_bucket is not None and (
        isinstance(length_bucket, bool) or not isinstance(length_bucket, int) or length_bucket < 1
    ):
        raise ValueError(
            "`length_bucket` must be a positive integer (the model runs at the longest "
            "text of each request rounded up to a multiple of it) or None (always at the "
            f"tokenizer's sequence_length); received length_bucket={length_bucket!r}."
        )
    if isinstance(model, Translator):
        return _translator_saved_model(model, _new_version_path(export_dir, version))
    model, tokenizer, label_names = prepare(model, tokenizer, label_names)
    final = _new_version_path(export_dir, version)
    label_names = [str(name) for name in label_names] if label_names else None

    # The model is not `track()`ed: the endpoints capture its variables, which
    # add_endpoint tracks; tracking it too saves every weight twice (once as
    # a Keras variable, once as the TensorFlow variable behind it).
    archive = keras.export.ExportArchive()
    token_signature = {
        name: tf.TensorSpec((None, None), tf.int32, name=name) for name in TOKEN_INPUTS
    }

    vocabulary_size = model_vocabulary_size(model)
    axes = token_axes(model, label_names) if length_bucket is not None else {}
    masked = ("start_logits", "end_logits") if isinstance(model, BertQuestionAnswerer) else ()
    fills = {name: MASKED_LOGIT if name in masked else 0.0 for name in axes}

    def bucketed_outputs(token_inputs, length):
        """The outputs of `token_inputs` run at their bucketed length, the
        per-token ones padded back to `length` positions."""
        if length_bucket is None:
            return model_outputs(model, token_inputs, label_names)
        trimmed = trim_to_bucket(token_inputs, length_bucket, length)
        outputs = model_outputs(model, trimmed, label_names)
        for name, value in outputs.items():
            if axes[name]:  # per-token: back to the shape clients expect
                outputs[name] = pad_positions(value, axes[name], length, fills[name])
        return outputs

    def serve_token_ids(inputs):
        if vocabulary_size is not None:
            checked = _checked_token_ids(inputs["token_ids"], vocabulary_size)
            inputs = dict(inputs, token_ids=checked)
        return bucketed_outputs(inputs, tf.shape(inputs["token_ids"])[1])

    archive.add_endpoint("serve_token_ids", serve_token_ids, input_signature=[token_signature])
    if tokenizer is not None:
        archive.track(tokenizer)
        text_signature = {"text": tf.TensorSpec((None,), tf.string, name="text")}
        if pairs:
            text_signature["text_pair"] = tf.TensorSpec((None,), tf.string, name="text_pair")

        def serve_text(inputs):
            token_inputs = tokenizer(inputs["text"], inputs.get("text_pair"))
            return bucketed_outputs(token_inputs, tokenizer.sequence_length)

        archive.add_endpoint("serving_default", serve_text, input_signature=[text_signature])
    else:
        archive.add_endpoint("serving_default", serve_token_ids, input_signature=[token_signature])

    # The staging folder (".<version>.staging-<pid>") is no version number,
    # so TF Serving, polling export_dir, never loads a half-written model.
    with atomic_path(final, overwrite=False) as staging:
        archive.write_out(staging, verbose=False)
    return final


def read_saved_model(path: str):
    """The `SavedModel` proto in `path/saved_model.pb`, read without loading
    the model (graphs, functions, signatures)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto_path = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(proto_path):
        raise ValueError(f"{path} is not a SavedModel folder (no saved_model.pb).")
    with open(proto_path, "rb") as f:
        return saved_model_pb2.SavedModel.FromString(f.read())


def signature_io(path: str) -> dict[str, dict[str, list[str]]]:
    """`{signature: {"inputs": [names], "outputs": [names]}}` of the SavedModel
    at `path`, from its proto (`read_saved_model`)."""
    return {
        key: {"inputs": sorted(signature.inputs), "outputs": sorted(signature.outputs)}
        for graph in read_saved_model(path).meta_graphs
        for key, signature in graph.signature_def.items()
    }


def bucketed_length(padding_mask, bucket: int, cap: int):
    """The token length a batch is trimmed to: one past its last real token
    in any row (`padding_mask`, (B, T), 1 on real tokens; for the
    tokenizer's end-padded rows, the longest sequence) rounded up to a multiple of
    `bucket`, at least `bucket` and at most `cap`; an int32 scalar tensor.

    Rounding up keeps the kernels to at most cap / bucket distinct shapes.
    """
    # The last real position + 1 of any row: the padding may sit anywhere in
    # token ids a client sends, only the columns after it are padding in all rows.
    positions = tf.range(1, tf.shape(padding_mask)[1] + 1)
    longest = tf.reduce_max(tf.cast(padding_mask, tf.int32) * positions)
    rounded = (longest + bucket - 1) // bucket * bucket
    return tf.minimum(tf.maximum(rounded, bucket), cap)


def trim_to_bucket(token_inputs: dict, bucket: int, cap: int) -> dict:
    """`token_inputs` ((B, T) tensors) cut to their first
    `bucketed_length(padding_mask, bucket, cap)` positions; every real token
    is kept, wherever the padding sits."""
    length = bucketed_length(token_inputs["padding_mask"], bucket, cap)
    return {name: value[:, :length] for name, value in token_inputs.items()}


def token_axes(model, label_names=None) -> dict[str, list[int]]:
    """The axes of each `model_outputs` output that run over token
    positions: those left unknown when it is traced for one sequence of
    unknown length (`sequence_output` [1], `start_logits` [1], stacked
    `hidden_states` [2]); empty for sequence-level outputs."""
    spec = {name: tf.TensorSpec((1, None), tf.int32, name=name) for name in TOKEN_INPUTS}
    traced = tf.function(lambda inputs: model_outputs(model, inputs, label_names))
    outputs = traced.get_concrete_function(spec).structured_outputs
    return {
        name: [axis for axis, size in enumerate(value.shape) if size is None]
        for name, value in outputs.items()
    }


def pad_positions(value, axes, length: int, fill: float = 0.0):
    """`value` padded at the end of each of its token `axes` to `length`
    positions with `fill`; the static shape says `length` there."""
    sizes = tf.shape(value)
    rank = len(value.shape)
    paddings = [[0, length - sizes[axis] if axis in axes else 0] for axis in range(rank)]
    padded = tf.pad(value, paddings, constant_values=tf.cast(fill, value.dtype))
    static = length if isinstance(length, int) else None
    padded.set_shape([static if axis in axes else size for axis, size in enumerate(value.shape)])
    return padded


def _checked_token_ids(token_ids, vocabulary_size: int):
    """`token_ids`, after asserting each indexes the embedding: TensorFlow's
    gather fails on CPU with "indices[i,j] = k is not in [0, V)" and returns
    zeros on GPU. TF Serving's ops include Assert; the ONNX and LiteRT
    exports do not go through this signature."""
    # No quotes in it: TensorFlow's error text would escape them.
    message = (
        f"token_ids must be in [0, {vocabulary_size}): the model has {vocabulary_size} "
        "tokens; make the ids with the tokenizer (vocab.txt) it was trained with"
    )
    size = tf.constant(vocabulary_size, tf.int32)
    checks = [
        tf.debugging.assert_non_negative(token_ids, message=message),
        tf.debugging.assert_less(token_ids, size, message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(token_ids)
