"""Reading and writing BERT checkpoints of Hugging Face and google-research/bert.

Both layouts are read into one canonical form: Hugging Face parameter names
without the `bert.` prefix ("encoder.layer.0.attention.self.query.weight"),
with PyTorch's (out, in) orientation for dense weights. One table then maps
the canonical names onto tfbert's variables, so every weight is accounted
for: a checkpoint that leaves a tfbert weight unset, has a tensor tfbert does
not use, or has a tensor of another shape is refused with all such names.

No torch is needed: safetensors files are read with `safetensors.numpy`,
PyTorch's `pytorch_model.bin` (a zip of pickled storages) with a restricted
unpickler that rebuilds only tensors, and google-research/bert checkpoints
with `tf.train.load_checkpoint`.
"""

import glob
import json
import os
import pickle
import re
import warnings
import zipfile
import zlib

import ml_dtypes
import numpy as np

from tfbert.files import atomic_path

# Hugging Face config.json / google bert_config.json keys -> BertBackbone kwargs.
_CONFIG_KEYS = {
    "vocab_size": "vocabulary_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "hidden_size": "hidden_dim",
    "intermediate_size": "intermediate_dim",
    "max_position_embeddings": "max_sequence_length",
    "type_vocab_size": "num_segments",
    "hidden_dropout_prob": "dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "hidden_act": "activation",
    "layer_norm_eps": "layer_norm_epsilon",
    "initializer_range": "initializer_range",
}
# Tensors a checkpoint may hold that carry no weight of their own.
_IGNORED = re.compile(
    r"(embeddings\.position_ids|cls\.predictions\.decoder\.(weight|bias)"
    r"|(.*[./])?(adam_[mv]|global_step)([./].*)?)$"
)


def backbone_config(config: dict) -> dict:
    """BertBackbone kwargs from a Hugging Face or google-research/bert config."""
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(
            f"position_embedding_type={kind!r} is not supported; tfbert's BERT "
            "uses absolute position embeddings."
        )
    missing = [key for key in list(_CONFIG_KEYS)[:5] if key not in config]
    if missing:
        raise ValueError(f"The BERT config lacks {missing}; is this a BERT config.json?")
    kwargs = {ours: config[theirs] for theirs, ours in _CONFIG_KEYS.items() if theirs in config}
    kwargs.setdefault("layer_norm_epsilon", 1e-12)  # google configs do not say
    return kwargs


def hf_config(backbone, architecture: str) -> dict:
    """A Hugging Face `config.json` dict for a BertBackbone."""
    # Hugging Face's BERT has one head count, head size (hidden_size /
    # num_attention_heads) and intermediate_size for all layers. Its
    # `pruned_heads` describes removed heads but not narrower FFNs.
    heads, width, head_dim = backbone.num_heads, backbone.intermediate_dim, backbone.head_dim
    if (
        isinstance(heads, list)
        or isinstance(width, list)
        or (head_dim is not None and head_dim * heads != backbone.hidden_dim)
    ):
        raise ValueError(
            "A Hugging Face BERT checkpoint needs the same sizes in every layer and "
            "hidden_dim = num_heads * head_dim; this backbone has "
            f"num_heads={heads!r}, intermediate_dim={width!r}, head_dim={head_dim!r}, "
            f"hidden_dim={backbone.hidden_dim} (per-layer sizes, as structured pruning "
            "leaves). Save it with `model.save('model.keras')` instead, which keeps "
            "every size."
        )
    config = {ours: getattr(backbone, ours) for ours in _CONFIG_KEYS.values()}
    hf = {theirs: config[ours] for theirs, ours in _CONFIG_KEYS.items()}
    if hf["attention_probs_dropout_prob"] is None:
        hf["attention_probs_dropout_prob"] = hf["hidden_dropout_prob"]
    if not isinstance(hf["hidden_act"], str):
        raise ValueError(
            f"Only named activations can be exported; the backbone uses {hf['hidden_act']!r}."
        )
    if hf["hidden_act"] == "gelu_approximate":
        hf["hidden_act"] = "gelu_new"
    return {
        "architectures": [architecture],
        "model_type": "bert",
        "position_embedding_type": "absolute",
        "pad_token_id": 0,
        **hf,
    }


# === Reading tensors ===


class _StateDict(dict):
    """Stands in for OrderedDict; takes the `_metadata` attribute torch sets."""


class _NotATensor(pickle.UnpicklingError):
    """A pickle that holds more than tensors (and may run code): refused."""


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles a PyTorch state dict into NumPy arrays, and nothing else."""

    _DTYPES = {
        "FloatStorage": np.float32,
        "HalfStorage": np.float16,
        "BFloat16Storage": ml_dtypes.bfloat16,
        "DoubleStorage": np.float64,
        "LongStorage": np.int64,
        "IntStorage": np.int32,
        "ShortStorage": np.int16,
        "CharStorage": np.int8,
        "ByteStorage": np.uint8,
        "BoolStorage": np.bool_,
    }

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) in (
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch._utils", "_rebuild_parameter"),
        ):
            return getattr(self, name)
        if (module, name) == ("collections", "OrderedDict"):
            return _StateDict
        if module == "torch" and name in self._DTYPES:
            return self._DTYPES[name]
        raise _NotATensor(
            f"pytorch_model.bin holds {module}.{name}, which is not a tensor; "
            "tfbert reads only state dicts of tensors."
        )

    def persistent_load(self, pid):
        _, dtype, key, _, _ = pid
        data = self.archive.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(data, dtype=dtype)

    @staticmethod
    def _rebuild_tensor_v2(storage, offset, size, stride, *_):
        itemsize = storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=tuple(size), strides=[s * itemsize for s in stride]
        )
        return np.array(view)

    @staticmethod
    def _rebuild_parameter(data, *_):
        return data


_REDOWNLOAD = "re-download the checkpoint or re-save it"


def _damaged(path, problem):
    """The error for a checkpoint file that cannot be read."""
    size = os.path.getsize(path)
    if size == 0:
        problem = "it is empty"
    return ValueError(
        f"{path} ({size:,} bytes) cannot be read: {problem}. The file is damaged or "
        f"incomplete (cut short while downloading or saving?); {_REDOWNLOAD}."
    )


def _read_json(path):
    """A checkpoint's JSON file as a dict, or an error naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _damaged(path, f"it is not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise _damaged(path, f"it holds a JSON {type(content).__name__}, not an object")
    return content


# What a cut or corrupted zip of pickled tensors raises while being read.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    pickle.UnpicklingError,
    EOFError,
    KeyError,
    ValueError,
    TypeError,
    IndexError,
    AttributeError,
)


def _read_pytorch(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    if not zipfile.is_zipfile(path):
        if magic.startswith(b"PK"):
            raise _damaged(path, "its zip archive has no end (the file is truncated)")
        if magic[:1] == b"\x80":  # a pickle: torch.save before 1.6
            raise ValueError(
                f"{path} is in PyTorch's legacy (pre-1.6) format; re-save it with a "
                "current torch or as safetensors to load it without torch."
            )
        raise _damaged(path, f"it is not a PyTorch zip archive (it starts with {magic!r})")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) == 1:
                prefix = pickles[0][: -len("/data.pkl")]
                with archive.open(pickles[0]) as f:
                    return dict(_TensorUnpickler(f, archive, prefix).load())
    except _NotATensor:
        raise
    except _ARCHIVE_ERRORS as error:
        problem = f"its pickled tensors do not read back ({type(error).__name__}: {error})"
        raise _damaged(path, problem) from None
    raise _damaged(path, f"its archive holds {len(pickles)} data.pkl files, not one")


def _read_safetensors(paths):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    tensors = {}
    for path in paths:
        try:
            tensors.update(load_file(path))
        except SafetensorError as error:
            raise _damaged(path, f"it is not a complete safetensors file ({error})") from None
    return tensors


def _google_to_canonical(name):
    """google-research/bert variable name -> (canonical name, transpose)."""
    name = re.sub(r"^bert/", "", name)
    name = re.sub(r"layer_(\d+)", r"layer.\1", name)
    name = name.replace("/", ".")
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    if name.endswith("_embeddings"):
        return name + ".weight", False
    if name == "cls.predictions.output_bias":
        return "cls.predictions.bias", False
    if name == "cls.seq_relationship.output_weights":
        return "cls.seq_relationship.weight", False  # stored (2, hidden) already
    if name == "cls.seq_relationship.output_bias":
        return "cls.seq_relationship.bias", False
    if name.endswith(".kernel"):
        return name[: -len("kernel")] + "weight", True
    return name, False


def _read_google(prefix):
    import tensorflow as tf  # TensorFlow checkpoints are read by TensorFlow only

    index = prefix + ".index"
    shards, expected = [], set()
    for path in sorted(glob.glob(glob.escape(prefix) + ".data-*")):
        match = re.search(r"\.data-\d{5}-of-(\d{5})$", path)
        if match:
            shards.append(path)
            total = int(match.group(1))
            expected.update(f"{prefix}.data-{i:05d}-of-{total:05d}" for i in range(total))
    missing = ([] if os.path.isfile(index) else [index]) + sorted(expected - set(shards))
    if missing or not shards:
        raise FileNotFoundError(
            f"The TensorFlow checkpoint {prefix!r} lacks {missing or [prefix + '.data-*']}: "
            f"a checkpoint is {os.path.basename(prefix)}.index plus its .data-* files. "
            "Copy the missing files next to the others, or re-download the checkpoint."
        )
    try:
        reader = tf.train.load_checkpoint(prefix)
    except tf.errors.OpError as error:
        raise _damaged(
            index, f"it is not a TensorFlow checkpoint index ({error.message})"
        ) from None
    tensors = {}
    for name in reader.get_variable_to_shape_map():
        if _IGNORED.match(name):
            continue
        canonical, transpose = _google_to_canonical(name)
        try:
            value = reader.get_tensor(name)
        except (tf.errors.OpError, IndexError) as error:
            detail = error.message if isinstance(error, tf.errors.OpError) else str(error)
            problem = f"variable {name!r} does not read back from it ({detail})"
            if len(shards) == 1:
                raise _damaged(shards[0], problem) from None
            raise ValueError(
                f"The TensorFlow checkpoint {prefix!r} cannot be read: {problem}, from "
                f"one of {shards}. A .data-* file is damaged or incomplete (cut short "
                f"while downloading or saving?); {_REDOWNLOAD}."
            ) from None
        tensors[canonical] = value.T if transpose else value
    return tensors


def _canonical(tensors):
    """Drops the `bert.` prefix and maps old LayerNorm gamma/beta names."""
    out = {}
    for name, value in tensors.items():
        name = re.sub(r"^bert\.", "", name)
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        out[name] = np.asarray(value)
    return out


def read_checkpoint(path) -> tuple[dict, dict]:
    """(config dict, canonical tensors) of a BERT checkpoint folder or prefix.

    Args:
        path: a Hugging Face folder (config.json with model.safetensors,
            a sharded model.safetensors.index.json, or pytorch_model.bin), a
            google-research/bert folder (bert_config.json, bert_model.ckpt.*),
            or a google checkpoint prefix (".../bert_model.ckpt").
    """
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []

    def find(name):
        return os.path.join(folder, name) if name in files else None

    if find("config.json"):
        config = _read_json(find("config.json"))
        if find("model.safetensors"):
            tensors = _read_safetensors([find("model.safetensors")])
        elif find("model.safetensors.index.json"):
            index = find("model.safetensors.index.json")
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise _damaged(index, "it has no `weight_map` of tensor names to shard files")
            shards = sorted(set(weight_map.values()))
            missing = [shard for shard in shards if shard not in files]
            if missing:
                raise FileNotFoundError(
                    f"{index} names shard files that are not in {folder!r}: {missing}; "
                    "download them next to it, or re-download the whole checkpoint."
                )
            tensors = _read_safetensors([os.path.join(folder, shard) for shard in shards])
        elif find("pytorch_model.bin"):
            tensors = _read_pytorch(find("pytorch_model.bin"))
        else:
            raise ValueError(
                f"{folder!r} has a config.json but no model.safetensors or "
                f"pytorch_model.bin (found: {files})."
            )
        return config, _canonical(tensors)
    if find("bert_config.json"):
        config = _read_json(find("bert_config.json"))
        prefix = path if not os.path.isdir(path) else None
        if prefix is None:
            indexes = [name for name in files if name.endswith(".index")]
            if len(indexes) != 1:
                raise ValueError(
                    f"{folder!r} must hold exactly one TensorFlow checkpoint "
                    f"(*.index); found {indexes}. Pass the checkpoint prefix instead."
                )
            prefix = os.path.join(folder, indexes[0][: -len(".index")])
        return config, _read_google(prefix)
    raise ValueError(
        f"{path!r} is not a BERT checkpoint: expected a Hugging Face folder "
        f"(config.json + weights) or a google-research/bert folder "
        f"(bert_config.json + bert_model.ckpt.*); found {files or 'no such folder'}."
    )


# === Canonical names <-> tfbert variables ===


def backbone_table(num_layers):
    """(tfbert variable path, canonical name, kind) for every backbone weight."""
    table = [
        ("embeddings/token_embedding/embeddings", "embeddings.word_embeddings.weight", "copy"),
        (
            "embeddings/segment_embedding/embeddings",
            "embeddings.token_type_embeddings.weight",
            "copy",
        ),
        (
            "embeddings/position_embedding/embeddings",
            "embeddings.position_embeddings.weight",
            "copy",
        ),
        ("embeddings/layer_norm/gamma", "embeddings.LayerNorm.weight", "copy"),
        ("embeddings/layer_norm/beta", "embeddings.LayerNorm.bias", "copy"),
    ]
    for i in range(num_layers):
        ours, theirs = f"transformer_layer_{i}", f"encoder.layer.{i}"
        for part in ("query", "key", "value"):
            table += [
                (f"{ours}/self_attention/{part}/kernel", f"{theirs}.attention.self.{part}.weight",
                 "heads_in"),
                (f"{ours}/self_attention/{part}/bias", f"{theirs}.attention.self.{part}.bias",
                 "heads_bias"),
            ]  # fmt: skip
        table += [
            (f"{ours}/self_attention/attention_output/kernel",
             f"{theirs}.attention.output.dense.weight", "heads_out"),
            (f"{ours}/self_attention/attention_output/bias",
             f"{theirs}.attention.output.dense.bias", "copy"),
            (f"{ours}/self_attention_layer_norm/gamma",
             f"{theirs}.attention.output.LayerNorm.weight", "copy"),
            (f"{ours}/self_attention_layer_norm/beta",
             f"{theirs}.attention.output.LayerNorm.bias", "copy"),
            (f"{ours}/intermediate_dense/kernel", f"{theirs}.intermediate.dense.weight", "dense"),
            (f"{ours}/intermediate_dense/bias", f"{theirs}.intermediate.dense.bias", "copy"),
            (f"{ours}/output_dense/kernel", f"{theirs}.output.dense.weight", "dense"),
            (f"{ours}/output_dense/bias", f"{theirs}.output.dense.bias", "copy"),
            (f"{ours}/feedforward_layer_norm/gamma", f"{theirs}.output.LayerNorm.weight", "copy"),
            (f"{ours}/feedforward_layer_norm/beta", f"{theirs}.output.LayerNorm.bias", "copy"),
        ]  # fmt: skip
    table += [
        ("pooler/kernel", "pooler.dense.weight", "dense"),
        ("pooler/bias", "pooler.dense.bias", "copy"),
    ]
    return table


HEAD_TABLE = [
    ("masked_lm_head/transform/kernel", "cls.predictions.transform.dense.weight", "dense"),
    ("masked_lm_head/transform/bias", "cls.predictions.transform.dense.bias", "copy"),
    ("masked_lm_head/layer_norm/gamma", "cls.predictions.transform.LayerNorm.weight", "copy"),
    ("masked_lm_head/layer_norm/beta", "cls.predictions.transform.LayerNorm.bias", "copy"),
    ("masked_lm_head/output_bias", "cls.predictions.bias", "copy"),
    ("next_sentence_head/kernel", "cls.seq_relationship.weight", "dense"),
    ("next_sentence_head/bias", "cls.seq_relationship.bias", "copy"),
]


def _to_ours(value, kind, shape):
    """A canonical tensor in tfbert's layout, or None when it cannot fit `shape`."""
    if kind in ("dense", "heads_in", "heads_out"):
        # (out, in) -> (in, out); per-head kernels then split out into heads:
        # heads_in (hidden, heads, head_dim), heads_out (heads, head_dim, hidden).
        value = value.T
    if kind != "dense" and kind != "copy" and value.size == np.prod(shape):
        value = value.reshape(shape)
    return value if tuple(value.shape) == tuple(shape) else None


def _to_theirs(value, kind):
    if kind == "copy":
        return value
    if kind == "heads_bias":
        return value.reshape(-1)
    if kind == "heads_in":
        return value.reshape(value.shape[0], -1).T
    if kind == "heads_out":
        return value.reshape(-1, value.shape[-1]).T
    return value.T  # dense


def load_weights(model, tensors, table, optional=(), source="checkpoint") -> list[str]:
    """Sets `model`'s variables from canonical tensors, or raises naming every problem.

    Args:
        model: a Keras model whose variable paths the table names.
        tensors: canonical name -> array.
        table: (variable path, canonical name, kind) rows.
        optional: variable paths the checkpoint may lack; they keep their
            initial values and are returned.
        source: what the tensors are, for the error message.

    Returns:
        The canonical names of optional weights the checkpoint lacked.
    """
    variables = {v.path: v for v in model.weights}
    remaining = dict(tensors)
    missing, absent, misshaped, updates = [], [], [], []
    for path, name, kind in table:
        variable = variables[path]
        if name not in remaining:
            (absent if path in optional else missing).append(name)
            continue
        value = _to_ours(remaining.pop(name), kind, variable.shape)
        if value is None:
            misshaped.append(f"{name} {tuple(tensors[name].shape)} for {path} "
                             f"{tuple(variable.shape)}")  # fmt: skip
            continue
        updates.append((variable, value))
    unexpected = sorted(name for name in remaining if not _IGNORED.match(name))
    if missing or unexpected or misshaped:
        lines = [f"The {source} does not match the model:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected)}")
        if misshaped:
            lines.append(f"  mis-shaped ({len(misshaped)}): {'; '.join(misshaped)}")
        raise ValueError("\n".join(lines))
    for variable, value in updates:
        variable.assign(value.astype(variable.dtype))
    if absent:
        warnings.warn(
            f"The {source} has no {', '.join(absent)}; those weights keep their "
            "random initialisation (train them before relying on them).",
            stacklevel=3,
        )
    return absent


def export_tensors(model, table, prefix=""):
    """Canonical (Hugging Face) tensors of `model`'s variables, named with `prefix`."""
    variables = {v.path: v for v in model.weights}
    return {
        prefix + name: np.ascontiguousarray(_to_theirs(np.asarray(variables[path]), kind))
        for path, name, kind in table
    }


def write_checkpoint(directory, config: dict, tensors: dict, tokenizer=None) -> str:
    """Writes a Hugging Face BERT folder: config.json, model.safetensors (+ tokenizer).

    The folder is assembled under a hidden staging name beside it and renamed
    when complete (`tfbert.files.atomic_path`); a failure removes the staging
    folder. An existing empty folder is replaced, a non-empty one never touched.
    """
    from safetensors.numpy import save_file

    directory = os.fspath(directory)
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise FileExistsError(
            f"{directory!r} exists and is not empty; choose a new folder or delete it first."
        )
    was_empty_folder = os.path.isdir(directory)
    if was_empty_folder:
        os.rmdir(directory)  # atomic_path never replaces a folder
    try:
        with atomic_path(directory, overwrite=False) as staging:
            os.makedirs(staging)
            save_file(
                tensors, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"}
            )
            with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as f:
                json.dump(config, f, indent=2)
            if tokenizer is not None:
                tokenizer.save_checkpoint(staging)
    except BaseException:
        if was_empty_folder:
            os.makedirs(directory, exist_ok=True)
        raise
    return directory
