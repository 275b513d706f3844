"""A user's labelled file: read back exactly, or refused naming file, line and column."""

import pytest

from tfbert.text import read_labeled_texts


def test_csv_and_tsv_read_with_label_names_or_indices(tmp_path):
    csv_file = tmp_path / "train.csv"
    csv_file.write_text('text,label\n"a gem, truly",positive\ndull,0\n', encoding="utf-8")
    assert read_labeled_texts(str(csv_file), ["negative", "positive"]) == (
        ["a gem, truly", "dull"],
        [1, 0],
    )
    tsv_file = tmp_path / "train.tsv"
    tsv_file.write_text("label\ttext\n2\tcafé au lait\n", encoding="utf-8")
    assert read_labeled_texts(str(tsv_file)) == (["café au lait"], [2])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty; it needs a header row 'text,label'"),
        (b"sentence,label\nfine,1\n", "line 1: the header ['sentence', 'label'] has no 'text'"),
        (b"text,label\nfine,1\nbad,neutral\n", "line 3, column 'label': unknown label 'neutral'"),
        (b"text,label\n,1\n", "line 2, column 'text': the text is empty"),
        (b"text,label\nfine,1,extra\n", "line 2: 3 columns, the header has 2"),
        (b"text,label\ncaf\xe9,1\n", "line 2 is not UTF-8 text (byte 14 of the file"),
        (b"text,label\n", "has a header but no examples"),
    ],
)
def test_bad_files_name_the_file_line_and_column(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        read_labeled_texts(str(path), ["negative", "positive"])
    assert message in str(error.value)
    assert "data.csv" in str(error.value)
