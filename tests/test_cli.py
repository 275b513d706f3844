import os

from tfbert.cli import main


def test_quickstart_pretrains_and_saves(tmp_path, capsys):
    code = main(
        [
            "quickstart",
            "--output-dir",
            str(tmp_path),
            "--documents",
            "60",
            "--epochs",
            "2",
            "--max-steps",
            "4",
            "--sequence-length",
            "64",
            "--batch-size",
            "8",
            "--precision",
            "float32",
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "masked-LM loss" in printed and "val_mlm_loss" in printed
    (run,) = os.listdir(tmp_path)
    files = set(os.listdir(tmp_path / run))
    assert {"pretrainer.keras", "vocab.txt", "pretraining_train.txt"} <= files
    # A second run gets its own folder; nothing is overwritten.
    main(
        [
            "quickstart",
            "--output-dir",
            str(tmp_path),
            "--documents",
            "60",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--sequence-length",
            "64",
            "--batch-size",
            "8",
            "--precision",
            "float32",
            "--verbose",
            "0",
        ]
    )
    assert len(os.listdir(tmp_path)) == 2
