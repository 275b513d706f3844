import os
import tempfile

import pytest

from tfbert.text import (
    clean_text,
    movie_reviews,
    read_documents,
    split_sentences,
    write_pretraining_text,
)


def test_clean_text_removes_markup_and_entities():
    assert clean_text("Great.<br /><br />Really &amp; truly<i>!</i>") == "Great. Really & truly !"


def test_split_sentences_rules():
    text = 'I met Mr. Smith and J. R. Jones. "It was great!" she said? Yes. 1999 was fine... Ok'
    assert split_sentences(text) == [
        "I met Mr. Smith and J. R. Jones.",
        '"It was great!" she said?',
        "Yes.",
        "1999 was fine...",
        "Ok",
    ]
    assert split_sentences("   ") == []


def test_real_imdb_reviews_split_into_sentences():
    reviews = [text for text, _ in movie_reviews("imdb")[:50]]
    sentences = [s for review in reviews for s in split_sentences(review)]
    assert len(sentences) > 5 * len(reviews)
    assert not any("<br" in s for s in sentences)
    # Sentence ends are real ends: nearly all end in terminal punctuation.
    ended = sum(s.rstrip("\"')").endswith((".", "!", "?")) for s in sentences)
    assert ended / len(sentences) > 0.9


def test_write_and_read_pretraining_text_never_overwrites():
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "corpus.txt")
    count = write_pretraining_text(["First one. Second one!", "", "Only one."], path)
    assert count == 3
    assert read_documents(path) == [["First one.", "Second one!"], ["Only one."]]
    with pytest.raises(FileExistsError, match="exists; choose a new path"):
        write_pretraining_text(["x"], path)
    assert read_documents(path) == [["First one.", "Second one!"], ["Only one."]]


def test_chinese_sentences_end_at_full_width_marks():
    text = "这本书很好看。我推荐给大家！你看过吗？“当然。”好……"
    assert split_sentences(text) == [
        "这本书很好看。",
        "我推荐给大家！",
        "你看过吗？",
        "“当然。”",
        "好……",
    ]
    # Latin rules still apply inside a mixed text.
    assert split_sentences("我喜欢它。It is good. Really!") == [
        "我喜欢它。",
        "It is good.",
        "Really!",
    ]
