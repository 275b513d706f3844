"""Text: tokenizers, corpora, sentence splitting and BERT pretraining data."""

from tfbert.text.bert_tokenizer import BertTokenizer, load_vocabulary
from tfbert.text.corpora import (
    chinese_reviews,
    minilm_checkpoint_dir,
    minilm_vocabulary_file,
    movie_reviews,
)
from tfbert.text.pretraining_dataset import pretraining_dataset, read_documents
from tfbert.text.sentences import clean_text, split_sentences, write_pretraining_text

__all__ = [
    "BertTokenizer",
    "chinese_reviews",
    "clean_text",
    "load_vocabulary",
    "minilm_checkpoint_dir",
    "minilm_vocabulary_file",
    "movie_reviews",
    "pretraining_dataset",
    "read_documents",
    "split_sentences",
    "write_pretraining_text",
]
