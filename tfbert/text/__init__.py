"""Text: tokenizers, corpora, sentence splitting and BERT pretraining data."""

from tfbert.text.bert_tokenizer import BertTokenizer, load_vocabulary, pack_segments
from tfbert.text.corpora import (
    bbc_headlines,
    bbc_news,
    chinese_reviews,
    chinese_vocabulary_file,
    german_english_pairs,
    minilm_checkpoint_dir,
    minilm_vocabulary_file,
    movie_reviews,
    wnut_ner,
)
from tfbert.text.detokenizer import restore_spacing
from tfbert.text.generation_scores import corpus_bleu, rouge_l
from tfbert.text.labeled_texts import read_labeled_texts, read_text_pairs
from tfbert.text.masking import MaskedLMMasker
from tfbert.text.pretraining_dataset import (
    pretraining_dataset,
    read_documents,
    read_pretraining_tfrecords,
    write_pretraining_tfrecords,
)
from tfbert.text.question_answering import (
    QAFeatures,
    decode_answers,
    prepare_qa_features,
    squad_scores,
)
from tfbert.text.sentences import clean_text, split_sentences, write_pretraining_text
from tfbert.text.seq2seq_dataset import seq2seq_dataset, seq2seq_tokenizer
from tfbert.text.vocabulary import build_vocabulary, count_words
from tfbert.text.word_labels import (
    IGNORE_LABEL,
    align_word_labels,
    entity_scores,
    entity_spans,
    word_predictions,
)

__all__ = [
    "QAFeatures",
    "decode_answers",
    "prepare_qa_features",
    "squad_scores",
    "IGNORE_LABEL",
    "align_word_labels",
    "entity_scores",
    "entity_spans",
    "word_predictions",
    "BertTokenizer",
    "bbc_headlines",
    "bbc_news",
    "corpus_bleu",
    "german_english_pairs",
    "restore_spacing",
    "rouge_l",
    "seq2seq_dataset",
    "seq2seq_tokenizer",
    "MaskedLMMasker",
    "build_vocabulary",
    "read_labeled_texts",
    "read_text_pairs",
    "chinese_reviews",
    "chinese_vocabulary_file",
    "count_words",
    "clean_text",
    "load_vocabulary",
    "pack_segments",
    "minilm_checkpoint_dir",
    "minilm_vocabulary_file",
    "movie_reviews",
    "wnut_ner",
    "pretraining_dataset",
    "read_documents",
    "read_pretraining_tfrecords",
    "split_sentences",
    "write_pretraining_text",
    "write_pretraining_tfrecords",
]
