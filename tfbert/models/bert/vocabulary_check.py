"""The one check that a tokenizer's ids index a model's token embedding.

check_vocabulary(tokenizer, classifier)   # ValueError naming both sizes
"""

from tfbert.models.bert.bert_backbone import BertBackbone


def model_vocabulary_size(model) -> int | None:
    """Rows of the token embedding of `model`: a `BertBackbone`, a model
    with a `.backbone` (task models, the pretrainer) or one with a
    `.classifier` (`TextClassifier`); None for other models."""
    if isinstance(model, BertBackbone):
        return model.vocabulary_size
    backbone = getattr(model, "backbone", None)
    if backbone is None and getattr(model, "classifier", None) is not None:
        backbone = getattr(model.classifier, "backbone", None)
    return backbone.vocabulary_size if isinstance(backbone, BertBackbone) else None


def check_vocabulary(tokenizer, model) -> None:
    """Raises `ValueError` when `tokenizer` makes ids for a vocabulary of
    another size than `model`'s token embedding: its ids would name other
    tokens than the model learned (and ids past the embedding fail). Does
    nothing when `tokenizer` is None or `model` has no BERT embedding."""
    if tokenizer is None:
        return
    expected = model_vocabulary_size(model)
    if expected is None or tokenizer.vocabulary_size == expected:
        return
    raise ValueError(
        f"The tokenizer has {tokenizer.vocabulary_size} tokens but the model's embedding has "
        f"{expected}: it is not the tokenizer the model was trained with, and its ids would "
        "name other tokens. Pass the tokenizer built from the vocab.txt the model was "
        "trained on (e.g. BertTokenizer(os.path.join(checkpoint_dir, 'vocab.txt')))."
    )
