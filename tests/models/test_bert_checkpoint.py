import json
import os
import re
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from tfbert.models import BertBackbone, BertPretrainer
from tfbert.text import BertTokenizer, minilm_checkpoint_dir

# One worker builds this module's module-scoped fixtures (see tests/conftest.py).
pytestmark = pytest.mark.xdist_group("test_bert_checkpoint")

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TINY = os.path.join(FIXTURES, "tiny_bert_pytorch")


@pytest.fixture(scope="module")
def minilm_reference():
    return dict(np.load(os.path.join(FIXTURES, "minilm_reference.npz")))


@pytest.fixture(scope="module")
def tiny_reference(minilm_reference):
    reference = dict(np.load(os.path.join(FIXTURES, "tiny_bert_reference.npz")))
    inputs = {
        "token_ids": reference["token_ids"],
        "segment_ids": minilm_reference["segment_ids"],
        "padding_mask": minilm_reference["padding_mask"],
        "mask_positions": reference["mask_positions"],
    }
    return inputs, reference


def _inputs(reference):
    return {k: reference[k] for k in ("token_ids", "segment_ids", "padding_mask")}


def test_minilm_equals_hugging_face_bert_model(minilm_reference, rotten_tomatoes):
    backbone = BertBackbone.from_checkpoint(minilm_checkpoint_dir())
    assert (backbone.activation, backbone.layer_norm_epsilon, backbone.num_layers) == (
        "gelu",
        1e-12,
        6,
    )
    out = backbone(_inputs(minilm_reference))
    # Three single sentences and three pairs, padded to one batch.
    sequence = np.abs(out["sequence_output"].numpy() - minilm_reference["sequence_output"])
    pooled = np.abs(out["pooled_output"].numpy() - minilm_reference["pooled_output"])
    assert sequence.max() < 1e-4 and pooled.max() < 1e-4, (sequence.max(), pooled.max())

    # Our tokenizer gives the reference's inputs from the raw text.
    texts = [text for text, _ in rotten_tomatoes]
    singles, pairs = minilm_reference["singles"], minilm_reference["pairs"]
    tokenizer = BertTokenizer.from_checkpoint(
        minilm_checkpoint_dir(), sequence_length=int(minilm_reference["max_length"])
    )
    packed = [tokenizer([texts[i] for i in singles])]
    packed.append(tokenizer([texts[a] for a, _ in pairs], [texts[b] for _, b in pairs]))
    length = minilm_reference["token_ids"].shape[1]
    for key in ("token_ids", "segment_ids", "padding_mask"):
        ours = np.concatenate([p[key].numpy() for p in packed])
        np.testing.assert_array_equal(ours[:, :length], minilm_reference[key])
        assert not ours[:, length:].any()


def test_pytorch_bin_with_heads_equals_hugging_face_bert_for_pretraining(tiny_reference):
    inputs, reference = tiny_reference
    pretrainer = BertPretrainer.from_checkpoint(TINY)
    # The config's tanh GELU and LayerNorm epsilon are honoured.
    assert pretrainer.backbone.activation == "gelu_new"
    assert pretrainer.backbone.layer_norm_epsilon == 1e-7
    out = pretrainer(inputs)
    np.testing.assert_allclose(out["mlm_logits"], reference["mlm_logits"], atol=1e-5)
    np.testing.assert_allclose(out["nsp_logits"], reference["nsp_logits"], atol=1e-5)


def _to_google(name, value):
    """Hugging Face name and tensor -> google-research/bert variable name and tensor."""
    if name == "cls.predictions.bias":
        return "cls/predictions/output_bias", value
    if name.startswith("cls.seq_relationship."):
        suffix = "output_weights" if name.endswith("weight") else "output_bias"
        return f"cls/seq_relationship/{suffix}", value
    name = name.replace("encoder.layer.", "encoder.layer_")
    if name.endswith("LayerNorm.weight"):
        name, value = name[: -len("weight")] + "gamma", value
    elif name.endswith("LayerNorm.bias"):
        name = name[: -len("bias")] + "beta"
    elif "_embeddings." in name:
        name = name[: -len(".weight")]
    elif name.endswith(".weight"):
        name, value = name[: -len("weight")] + "kernel", value.T
    name = name.replace(".", "/")
    return (name if name.startswith("cls/") else "bert/" + name), value


def _write_google(tmp_path):
    """The tiny checkpoint as a google-research/bert folder (with optimizer slots)."""
    pretrainer = BertPretrainer.from_checkpoint(TINY)
    exported = tmp_path / "hf"
    pretrainer.save_checkpoint(exported)
    google = tmp_path / "google"
    google.mkdir()
    with tf.Graph().as_default():
        for name, value in load_file(exported / "model.safetensors").items():
            name, value = _to_google(re.sub(r"^bert\.", "", name), value)
            tf.compat.v1.Variable(value, name=name)
            if name.endswith("kernel"):  # optimizer slots are skipped
                tf.compat.v1.Variable(np.zeros_like(value), name=name + "/adam_m")
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(google / "bert_model.ckpt"))
    with open(TINY + "/config.json", encoding="utf-8") as f:
        config = {k: v for k, v in json.load(f).items() if k != "layer_norm_eps"}
    config["hidden_act"] = "gelu_new"
    (google / "bert_config.json").write_text(json.dumps(config))
    return google


def test_google_checkpoint_equals_the_same_weights_from_hugging_face(tiny_reference, tmp_path):
    inputs, reference = tiny_reference
    google = _write_google(tmp_path)
    loaded = BertPretrainer.from_checkpoint(google, layer_norm_epsilon=1e-7)
    out = loaded(inputs)
    np.testing.assert_allclose(out["mlm_logits"], reference["mlm_logits"], atol=1e-5)
    np.testing.assert_allclose(out["nsp_logits"], reference["nsp_logits"], atol=1e-5)


def test_save_checkpoint_round_trip_is_exact(tmp_path, tiny_reference):
    folder = minilm_checkpoint_dir()
    backbone = BertBackbone.from_checkpoint(folder)
    tokenizer = BertTokenizer.from_checkpoint(folder)
    saved = tmp_path / "minilm"
    backbone.save_checkpoint(saved, tokenizer=tokenizer)
    original = load_file(os.path.join(folder, "model.safetensors"))
    written = load_file(saved / "model.safetensors")
    assert set(written) == set(original) - {"embeddings.position_ids"}
    for name, value in written.items():
        np.testing.assert_array_equal(value, original[name], err_msg=name)
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        original_config = json.load(f)
    with open(saved / "config.json", encoding="utf-8") as f:
        config = json.load(f)
    for key in ("hidden_act", "layer_norm_eps", "num_attention_heads", "type_vocab_size"):
        assert config[key] == original_config[key]
    reloaded = BertTokenizer.from_checkpoint(saved)
    assert reloaded.vocabulary == tokenizer.vocabulary and reloaded.lowercase

    # Pretrainer: BertForPreTraining names, identical logits after reloading.
    inputs, reference = tiny_reference
    pretrainer = BertPretrainer.from_checkpoint(TINY)
    pretrainer.save_checkpoint(tmp_path / "tiny")
    names = set(load_file(tmp_path / "tiny" / "model.safetensors"))
    assert "bert.encoder.layer.1.output.dense.weight" in names
    assert "cls.seq_relationship.weight" in names
    again = BertPretrainer.from_checkpoint(tmp_path / "tiny")(inputs)
    np.testing.assert_array_equal(again["mlm_logits"], pretrainer(inputs)["mlm_logits"])

    with pytest.raises(FileExistsError, match="exists and is not empty"):
        backbone.save_checkpoint(saved)

    # A save that fails midway (after the weights, at the tokenizer) leaves
    # the empty folder it was given, and no staging leftovers beside it.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AttributeError, match="save_checkpoint"):
        backbone.save_checkpoint(empty, tokenizer="vocab.txt")
    assert os.listdir(empty) == [] and not [n for n in os.listdir(tmp_path) if n[0] == "."]
    backbone.save_checkpoint(empty)
    assert sorted(os.listdir(empty)) == ["config.json", "model.safetensors"]


def _write_hf(folder, config, tensors):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))


def test_mismatched_checkpoints_name_every_problem(tmp_path):
    from tfbert.models.bert.bert_checkpoint import read_checkpoint

    config, tensors = read_checkpoint(TINY)
    tensors = {name: value for name, value in tensors.items() if not name.startswith("cls.")}
    broken = dict(tensors)
    del broken["encoder.layer.1.output.dense.bias"]
    broken["encoder.layer.0.attention.self.query.weight"] = np.zeros((8, 32), np.float32)
    broken["encoder.layer.0.attention.self.rotary.weight"] = np.zeros((4,), np.float32)
    _write_hf(tmp_path / "broken", config, broken)
    with pytest.raises(ValueError) as error:
        BertBackbone.from_checkpoint(tmp_path / "broken")
    message = str(error.value)
    assert "missing (1): encoder.layer.1.output.dense.bias" in message
    assert "unexpected (1): encoder.layer.0.attention.self.rotary.weight" in message
    assert "mis-shaped (1): encoder.layer.0.attention.self.query.weight (8, 32)" in message

    # A config that disagrees with the weights lists the layer it lacks.
    _write_hf(tmp_path / "deeper", {**config, "num_hidden_layers": 3}, tensors)
    with pytest.raises(ValueError, match=r"missing \(16\): encoder\.layer\.2\."):
        BertBackbone.from_checkpoint(tmp_path / "deeper")
    _write_hf(
        tmp_path / "relative", {**config, "position_embedding_type": "relative_key"}, tensors
    )
    with pytest.raises(
        ValueError, match="position_embedding_type='relative_key' is not supported"
    ):
        BertBackbone.from_checkpoint(tmp_path / "relative")
    with pytest.raises(ValueError, match="is not a BERT checkpoint"):
        BertBackbone.from_checkpoint(tmp_path)


def _copy(source, folder, names):
    folder.mkdir()
    for name in names:
        shutil.copy(os.path.join(source, name), folder / name)
    return folder


def _refusal(path, error=ValueError):
    with pytest.raises(error) as caught:
        BertBackbone.from_checkpoint(path)
    return str(caught.value)


REDOWNLOAD = (
    "The file is damaged or incomplete (cut short while downloading or saving?); "
    "re-download the checkpoint or re-save it."
)


def test_damaged_hugging_face_files_are_named(tmp_path):
    # The real MiniLM weights, cut short after 1 MB.
    minilm = _copy(minilm_checkpoint_dir(), tmp_path / "minilm", ["config.json"])
    with open(os.path.join(minilm_checkpoint_dir(), "model.safetensors"), "rb") as f:
        (minilm / "model.safetensors").write_bytes(f.read(1_000_000))
    assert _refusal(minilm) == (
        f"{minilm / 'model.safetensors'} (1,000,000 bytes) cannot be read: it is not a "
        "complete safetensors file (Error while deserializing header: incomplete "
        f"metadata, file not fully covered). {REDOWNLOAD}"
    )

    # Its config.json cut in the middle.
    config = minilm / "config.json"
    config.write_text(config.read_text()[:100])
    assert _refusal(minilm) == (
        f"{config} (100 bytes) cannot be read: it is not valid JSON (Expecting property "
        f"name enclosed in double quotes: line 6 column 3 (char 100)). {REDOWNLOAD}"
    )

    # A sharded checkpoint whose index is cut, or names a shard that is absent.
    sharded = _copy(minilm_checkpoint_dir(), tmp_path / "sharded", ["config.json"])
    index = sharded / "model.safetensors.index.json"
    index.write_text('{"weight_map": ')
    assert _refusal(sharded) == (
        f"{index} (15 bytes) cannot be read: it is not valid JSON (Expecting value: "
        f"line 1 column 16 (char 15)). {REDOWNLOAD}"
    )
    index.write_text(json.dumps({"weight_map": {"pooler.dense.bias": "model-00002.safetensors"}}))
    assert _refusal(sharded, FileNotFoundError) == (
        f"{index} names shard files that are not in {str(sharded)!r}: "
        "['model-00002.safetensors']; download them next to it, or re-download the whole "
        "checkpoint."
    )

    # The tiny PyTorch checkpoint cut in half, and with its pickle cut short.
    with open(os.path.join(TINY, "pytorch_model.bin"), "rb") as f:
        data = f.read()
    cut = _copy(TINY, tmp_path / "cut", ["config.json"])
    (cut / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    assert _refusal(cut) == (
        f"{cut / 'pytorch_model.bin'} (86,184 bytes) cannot be read: its zip archive "
        f"has no end (the file is truncated). {REDOWNLOAD}"
    )
    repacked = _copy(TINY, tmp_path / "repacked", ["config.json"])
    with zipfile.ZipFile(os.path.join(TINY, "pytorch_model.bin")) as source:
        with zipfile.ZipFile(repacked / "pytorch_model.bin", "w") as target:
            for item in source.infolist():
                content = source.read(item.filename)
                if item.filename.endswith("/data.pkl"):
                    content = content[: len(content) // 2]
                target.writestr(item, content)
    message = _refusal(repacked)
    assert message.startswith(f"{repacked / 'pytorch_model.bin'} (")
    assert "cannot be read: its pickled tensors do not read back (EOFError: Ran out of input)" in (
        message
    )
    assert message.endswith(REDOWNLOAD)


def test_damaged_google_checkpoints_are_named(tmp_path):
    google = _write_google(tmp_path)
    prefix = google / "bert_model.ckpt"
    index, data = google / "bert_model.ckpt.index", google / "bert_model.ckpt.data-00000-of-00001"
    original_index, original_data = index.read_bytes(), data.read_bytes()
    cases = [
        (index, b"", "it is empty"),
        (
            index,
            b"not an index" * 10,
            "it is not a TensorFlow checkpoint index (not an sstable (bad magic number))",
        ),
        (
            index,
            original_index[:-20],
            "it is not a TensorFlow checkpoint index (not an sstable (bad magic number))",
        ),
        (
            data,
            original_data[: len(original_data) // 2],
            "variable 'cls/seq_relationship/output_weights' does not read back from it "
            "(Read less bytes than requested)",
        ),
        (
            data,
            bytes(len(original_data)),
            "variable 'cls/seq_relationship/output_weights' does not read back from it "
            f"(TensorBundle at {prefix} shard 0 (256 bytes): Checksum does not match",
        ),
    ]
    for broken, content, problem in cases:
        index.write_bytes(original_index)
        data.write_bytes(original_data)
        broken.write_bytes(content)
        message = _refusal(google)
        assert message.startswith(f"{broken} ({len(content):,} bytes) cannot be read: {problem}")
        assert message.endswith(REDOWNLOAD)

    index.write_bytes(original_index)
    data.unlink()
    assert _refusal(google, FileNotFoundError) == (
        f"The TensorFlow checkpoint {str(prefix)!r} lacks ['{prefix}.data-*']: a checkpoint "
        "is bert_model.ckpt.index plus its .data-* files. Copy the missing files next to "
        "the others, or re-download the checkpoint."
    )
    config = google / "bert_config.json"
    config.write_text("{'hidden_size': 8}")
    assert _refusal(google) == (
        f"{config} (18 bytes) cannot be read: it is not valid JSON (Expecting property "
        f"name enclosed in double quotes: line 1 column 2 (char 1)). {REDOWNLOAD}"
    )
