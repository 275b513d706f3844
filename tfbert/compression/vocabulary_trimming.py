"""A classifier whose vocabulary keeps only the word pieces its domain uses.

A BERT's token embedding is most of a small model: all-MiniLM-L6-v2's
30,522 x 384 table is 11.7M of its 22.7M parameters, so a student that keeps
the width cannot shrink much on disk however few blocks it has. Sentences of
one domain use a few thousand of those pieces; the rest can go.
"""

from tfbert.models import BertBackbone, BertClassifier, TextClassifier
from tfbert.text.bert_tokenizer import SPECIAL_TOKENS


def _kept_token_ids(tokenizer, texts, batch_size: int) -> list[int]:
    """Ids of the special tokens, single characters, "##" + character pieces
    and every piece of `texts` the model reads (the first
    `sequence_length - 2` of each text), in the original order."""
    window = tokenizer.sequence_length - 2
    kept = {tokenizer.vocabulary.index(token) for token in SPECIAL_TOKENS}
    for i, token in enumerate(tokenizer.vocabulary):
        if len(token) == 1 or (token.startswith("##") and len(token) == 3):
            kept.add(i)
    for start in range(0, len(texts), batch_size):
        pieces = tokenizer.tokenize(texts[start : start + batch_size])[:, :window]
        kept.update(int(i) for i in pieces.flat_values.numpy())
    return sorted(kept)


def trim_vocabulary(
    text_classifier: TextClassifier, texts, batch_size: int = 512
) -> tuple[TextClassifier, list[int]]:
    """A copy of `text_classifier` whose tokenizer and token embedding keep
    only the pieces needed for `texts`.

    Kept: BERT's special tokens, every single-character token and every
    "##" + one character piece (so any word still tokenizes, at worst
    into characters, rather than becoming `[UNK]`), and every piece the
    model reads of `texts`: the first `sequence_length - 2` pieces of each
    (the tokenizer truncates the rest away; for a long document that is
    most of it). Their embedding rows are gathered in the original order.
    WordPiece takes the longest matching piece, and no piece it took there
    is removed, so `texts` pack to the same ids and the copy's outputs on
    them equal the original's. Other text, or text past the window with a
    longer `sequence_length`, may be cut into shorter pieces than before.

    Args:
        text_classifier: `TextClassifier` whose classifier is a
            `BertClassifier` (pruned or not).
        texts: non-empty list of str, the in-domain text (e.g. the training
            sentences).
        batch_size: int, default 512. Texts tokenized at a time.

    Returns:
        `(trimmed TextClassifier, kept)`, `kept[j]` being the original id of
        new id j.

    Example:
        small, kept = trim_vocabulary(model, train_texts)
        len(kept)  # e.g. 12,000 of 30,522
    """
    if not isinstance(text_classifier, TextClassifier):
        raise ValueError(
            "`text_classifier` must be a tfbert TextClassifier (a tokenizer in front of "
            f"a BertClassifier); received {type(text_classifier).__name__}."
        )
    classifier = text_classifier.classifier
    if type(classifier) is not BertClassifier or getattr(classifier, "pruning", None):
        raise ValueError(
            "trim_vocabulary rebuilds a plain BertClassifier; received a "
            f"{type(classifier).__name__}. Call strip_pruning on a pruning-wrapped model first."
        )
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError(
            "`texts` must be a non-empty list of strings (the in-domain text whose "
            f"pieces are kept); received {type(texts).__name__}."
        )
    if not all(isinstance(text, str) for text in texts):
        raise ValueError("`texts` must hold only strings.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; received {batch_size!r}.")

    tokenizer = text_classifier.tokenizer
    kept = _kept_token_ids(tokenizer, list(texts), batch_size)
    trimmed_tokenizer = type(tokenizer).from_config(
        {**tokenizer.get_config(), "vocabulary": [tokenizer.vocabulary[i] for i in kept]}
    )

    backbone = classifier.backbone
    config = backbone.get_config()
    config.pop("name", None)
    config["vocabulary_size"] = len(kept)
    trimmed_backbone = BertBackbone.from_config(config)
    table = backbone.token_embedding.embeddings
    weights = [
        weight.numpy()[kept] if weight is table else weight.numpy() for weight in backbone.weights
    ]
    trimmed_backbone.set_weights(weights)
    trimmed = BertClassifier(
        trimmed_backbone,
        classifier.num_classes,
        dropout=classifier.dropout,
        pooling=classifier.pooling,
    )
    trimmed.logits_dense.set_weights(classifier.logits_dense.get_weights())
    return (
        TextClassifier(trimmed_tokenizer, trimmed, label_names=text_classifier.label_names),
        kept,
    )
