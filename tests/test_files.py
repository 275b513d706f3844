import os

import pytest

from tfbert.files import atomic_path


def test_a_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out" / "model.bin"
    with atomic_path(target) as staging:
        assert not os.path.exists(target)
        with open(staging, "wb") as f:
            f.write(b"new")
        assert os.path.dirname(staging) == str(tmp_path / "out")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path / "out") == ["model.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as staging:
            with open(staging, "wb") as f:
                f.write(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_folders_are_renamed_whole_and_never_replaced(tmp_path):
    target = tmp_path / "export" / "1"
    with atomic_path(target) as staging:
        os.makedirs(os.path.join(staging, "variables"))
        open(os.path.join(staging, "saved_model.pb"), "wb").close()
    assert sorted(os.listdir(target)) == ["saved_model.pb", "variables"]
    with pytest.raises(FileExistsError, match="already exists; nothing was written"):
        with atomic_path(target):
            pass
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "export" / "2") as staging:
            os.makedirs(staging)
            raise RuntimeError("conversion failed")
    assert os.listdir(tmp_path / "export") == ["1"]


def test_no_overwrite_and_an_empty_block_are_refused(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("kept")
    with pytest.raises(FileExistsError):
        with atomic_path(target, overwrite=False):
            pass
    with pytest.raises(FileNotFoundError, match="Nothing was written"):
        with atomic_path(tmp_path / "b.txt"):
            pass
    assert target.read_text() == "kept" and os.listdir(tmp_path) == ["a.txt"]
