import os

import numpy as np
import pytest

from tfbert.export import model_outputs, onnx, run_onnx
from tfbert.text import BertTokenizer


@pytest.mark.parametrize("part", ["classifier", "backbone"])
def test_onnx_runtime_matches_keras_at_two_batch_sizes_and_lengths(
    tmp_path, sentiment, texts, vocabulary_file, part
):
    model = sentiment.classifier if part == "classifier" else sentiment.classifier.backbone
    path = onnx(model, str(tmp_path / f"{part}.onnx"), tokenizer=sentiment.tokenizer)
    for length in (16, 64):
        tokenizer = BertTokenizer(vocabulary_file, sequence_length=length)
        for batch in (texts[:1], texts):
            inputs = tokenizer(batch)
            expected = model_outputs(model, inputs)
            got = run_onnx(path, {name: value.numpy() for name, value in inputs.items()})
            assert sorted(got) == sorted(expected)
            for name, value in expected.items():
                np.testing.assert_allclose(got[name], value.numpy(), atol=1e-4, err_msg=name)


def test_onnx_refuses_to_overwrite_and_odd_names(tmp_path, sentiment):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"a model someone saved")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        onnx(sentiment, str(path))
    assert path.read_bytes() == b"a model someone saved"
    with pytest.raises(ValueError, match="end in .onnx"):
        onnx(sentiment, str(tmp_path / "model.bin"))
    small = BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    with pytest.raises(ValueError, match="tokenizer has 6 tokens but the model's embedding has"):
        onnx(sentiment.classifier, str(tmp_path / "other.onnx"), tokenizer=small)
    assert os.listdir(tmp_path) == ["model.onnx"]


@pytest.mark.xdist_group("fine_tuned_minilm")
def test_dynamic_int8_onnx_keeps_the_labels_of_a_fine_tuned_minilm(
    tmp_path, fine_tuned_minilm, minilm_reference_labels
):
    from tfbert.export import VerificationError, verify_onnx
    from tfbert.export.onnx import onnx_quantization

    classifier, tokenizer, test_x, test_y, _, texts = fine_tuned_minilm
    path = onnx(classifier, str(tmp_path / "int8.onnx"), quantization="dynamic_int8")
    assert onnx_quantization(path) == "dynamic_int8"
    # int8 weights: about a quarter of the float32 parameters' bytes.
    float_bytes = 4 * classifier.count_params()
    assert os.path.getsize(path) < 0.3 * float_bytes
    reference = minilm_reference_labels
    labels = run_onnx(path, test_x)["label"]
    agreement = float(np.mean(labels == reference))
    print(
        f"ONNX dynamic_int8: {agreement:.3f} label agreement on 1,000 held-out sentences, "
        f"accuracy {np.mean(labels == test_y):.3f} vs {np.mean(reference == test_y):.3f}"
    )
    assert agreement >= 0.96
    assert abs(np.mean(labels == test_y) - np.mean(reference == test_y)) <= 0.02

    report = verify_onnx(path, classifier, texts[:200], tokenizer=tokenizer)
    assert report["label_agreement"] >= 0.96
    # A bar above 100% fails on any texts: 16 show the message.
    with pytest.raises(VerificationError) as error:
        verify_onnx(path, classifier, texts[:16], tokenizer=tokenizer, min_label_agreement=1.01)
    message = str(error.value)
    assert "(dynamic_int8) fails the label check" in message
    assert "of 16 labels" in message and "below the required 101.0%" in message
    with pytest.raises(ValueError, match="Unknown quantization 'int4' for ONNX"):
        onnx(classifier, str(tmp_path / "int4.onnx"), quantization="int4")
    assert not os.path.exists(tmp_path / "int4.onnx")


def test_the_int8_preparation_rewrites_keep_the_float_outputs(tmp_path):
    """Gemm -> MatMul + Add and the folded weight shapes compute what the graph
    did, also when a transposed weight feeds other nodes as it is."""
    import onnx as onnx_format
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from tfbert.export.onnx import _fold_weight_shapes, _gemm_as_matmul

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 4)).astype("float32")  # (out, in): used with transB=1
    bias = rng.normal(size=(3,)).astype("float32")
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["plain"], transB=1, beta=0.0),
        helper.make_node("Gemm", ["x", "w", "b"], ["biased"], transB=1),
        helper.make_node("Gemm", ["x", "w"], ["scaled"], transB=1, alpha=0.5),  # kept
        helper.make_node("Gather", ["w", "index"], ["rows"], axis=0),  # w as it is
        helper.make_node("Shape", ["w"], ["shape"]),
        helper.make_node("Reshape", ["w", "flat"], ["flattened"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rewrites",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
            for name in ("plain", "biased", "scaled", "rows", "flattened")
        ]
        + [helper.make_tensor_value_info("shape", TensorProto.INT64, None)],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(np.array([2, 0], np.int64), "index"),
            numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.normal(size=(2, 4)).astype("float32")

    def run(model):
        path = str(tmp_path / "m.onnx")
        onnx_format.save(model, path)
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, {"x": x}), strict=True))

    before = run(model)
    _fold_weight_shapes(model)
    _gemm_as_matmul(model)
    kinds = [node.op_type for node in model.graph.node]
    assert kinds.count("Gemm") == 1 and kinds.count("MatMul") == 2
    assert "Shape" not in kinds and "Reshape" not in kinds
    after = run(model)
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(before["plain"], x @ weight.T, atol=1e-6)


def test_node_protos_written_once_give_the_model_tf2onnx_writes(
    tmp_path, tiny, texts, monkeypatch
):
    """`onnx()` skips tf2onnx's rewrite of every node's protobuf after each
    optimizer pass: the file holds the same nodes, attributes and weights as
    tf2onnx's own conversion (set TF2ONNX_CATCH_ERRORS: the user's choice),
    computes the same logits, and tf2onnx is left as it was."""
    import onnx as onnx_format
    from onnx import numpy_helper
    from tf2onnx import optimizer
    from tf2onnx.graph import Graph

    writes = []
    write_all = Graph.update_proto

    def counted(self, external_tensor_storage=None):
        writes.append(self)
        return write_all(self, external_tensor_storage)

    monkeypatch.setattr(Graph, "update_proto", counted)
    optimize_graph = optimizer.optimize_graph
    monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    fast = onnx(tiny.classifier, str(tmp_path / "fast.onnx"))
    assert (optimizer.optimize_graph, Graph.update_proto) == (optimize_graph, counted)
    fast_writes, writes[:] = len(writes), []
    monkeypatch.setenv("TF2ONNX_CATCH_ERRORS", "TRUE")
    own = onnx(tiny.classifier, str(tmp_path / "own.onnx"))
    # Once after conversion, once in make_model; tf2onnx's way adds one per pass.
    assert fast_writes == 2 and len(writes) > 40, (fast_writes, len(writes))

    def contents(path):
        graph = onnx_format.load(path).graph
        # tf2onnx's node order and names vary from one conversion to the next.
        nodes = sorted(
            (
                node.op_type,
                len(node.input),
                [(a.name, a.type, a.i, a.f, list(a.ints)) for a in node.attribute],
            )
            for node in graph.node
        )
        weights = sorted(
            (w.data_type, tuple(w.dims), numpy_helper.to_array(w).tobytes())
            for w in graph.initializer
        )
        return nodes, weights

    fast_nodes, fast_weights = contents(fast)
    own_nodes, own_weights = contents(own)
    assert len(fast_nodes) > 100 and fast_nodes == own_nodes
    assert len(fast_weights) > 10 and fast_weights == own_weights
    inputs = {name: value.numpy() for name, value in tiny.tokenizer(texts).items()}
    np.testing.assert_array_equal(
        run_onnx(fast, inputs)["logits"], run_onnx(own, inputs)["logits"]
    )


def test_a_failing_tf2onnx_optimizer_pass_is_skipped_as_tf2onnx_does(
    tmp_path, tiny, texts, monkeypatch
):
    """`onnx()` runs tf2onnx's optimizer passes in place (no deep copy per
    pass); where one raises, the conversion is redone with tf2onnx's own
    skip-the-failing-pass mode, and the user's environment is left alone."""
    from tf2onnx import optimizer
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    runs = []

    class Failing(GraphOptimizerBase):
        def _optimize(self, graph):
            runs.append(os.environ.get("TF2ONNX_CATCH_ERRORS"))
            raise RuntimeError("a broken optimizer pass")

    monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    passes = dict(optimizer._optimizers, failing=Failing)
    monkeypatch.setattr(optimizer, "_optimizers", passes)
    path = onnx(tiny.classifier, str(tmp_path / "model.onnx"))
    assert runs[:2] == ["FALSE", None]
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ
    inputs = tiny.tokenizer(texts)
    expected = model_outputs(tiny.classifier, inputs)["logits"].numpy()
    got = run_onnx(path, {name: value.numpy() for name, value in inputs.items()})["logits"]
    np.testing.assert_allclose(got, expected, atol=1e-5)
