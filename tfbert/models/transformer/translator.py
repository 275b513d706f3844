"""Strings in, strings out: a tokenizer, a trained `Transformer` and a decoding setup.

translator = Translator(tokenizer, model, sampler="beam")
translator.translate(["Ich habe keine Ahnung."])   # ["I have no idea."]
saved_model(translator, "exports/de-en")           # the same in one TF Serving graph
"""

import warnings

import tensorflow as tf

from tfbert.models.transformer.samplers import get_sampler
from tfbert.models.transformer.transformer import Transformer
from tfbert.text.bert_tokenizer import BertTokenizer
from tfbert.text.detokenizer import restore_spacing
from tfbert.text.seq2seq_dataset import encode_sources

# Sources are padded to a multiple of this many tokens, so the compiled
# decoding loop is reused across batches of similar length.
SOURCE_BUCKET = 16


def source_inputs(tokenizer: BertTokenizer, texts, max_source_length: int):
    """Strings (B,) -> ({"encoder_token_ids", "encoder_padding_mask"}, empty-source
    flags (B,), number of cut sources), shaped as `seq2seq_dataset` trains on
    them and padded to a multiple of `SOURCE_BUCKET` tokens."""
    pieces = tokenizer.tokenize(texts)
    ids, cut = encode_sources(tokenizer, pieces, max_source_length)
    length = tf.cast(tf.reduce_max(ids.row_lengths()), tf.int32)
    length = tf.minimum(-(-length // SOURCE_BUCKET) * SOURCE_BUCKET, max_source_length)
    source = ids.to_tensor(tokenizer.pad_token_id)
    source = tf.pad(
        source,
        [[0, 0], [0, length - tf.shape(source)[1]]],
        constant_values=tokenizer.pad_token_id,
    )
    inputs = {
        "encoder_token_ids": source,
        "encoder_padding_mask": tf.cast(source != tokenizer.pad_token_id, tf.int32),
    }
    return inputs, pieces.row_lengths() == 0, cut


def output_texts(tokenizer: BertTokenizer, token_ids, empty):
    """Generated ids (B, L) -> readable strings (B,); "" where `empty` is set."""
    texts = restore_spacing(tokenizer.detokenize(token_ids))
    return tf.where(empty, tf.constant(""), texts)


class Translator:
    """Raw source strings to readable output strings with a trained `Transformer`.

    Sources are tokenized as `seq2seq_dataset` shapes them for training (word
    pieces cut to `max_source_length - 1`, then `[SEP]`), decoded with the
    model's cached loop, and the output pieces are joined into words and
    given back their spacing (`restore_spacing`). An empty source gives an
    empty output. Translation and headline generation alike: any text-to-text
    model trained on `seq2seq_dataset` batches.

    Args:
        tokenizer: the `BertTokenizer` the model was trained with (its
            vocabulary size must be the model's).
        model: a trained `Transformer`.
        max_source_length: int, default the model's `max_sequence_length`.
            Longer sources are cut (`translate` warns with the count).
        max_length: int, default the model's `max_sequence_length`. Output
            length in tokens, start token included; at most that.
        sampler: "beam" (default), "greedy", "top_k", "top_p" or a sampler
            object, as in `Transformer.generate`.
        num_beams: int, default 4. For `sampler="beam"`.
    """

    def __init__(
        self,
        tokenizer: BertTokenizer,
        model: Transformer,
        max_source_length: int | None = None,
        max_length: int | None = None,
        sampler="beam",
        num_beams: int = 4,
    ):
        if not isinstance(tokenizer, BertTokenizer):
            raise ValueError(
                f"`tokenizer` must be a tfbert BertTokenizer; received {type(tokenizer).__name__}."
            )
        if not isinstance(model, Transformer):
            raise ValueError(
                f"`model` must be a tfbert Transformer; received {type(model).__name__}."
            )
        sizes = model.vocabulary_size
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes, sizes]
        if sizes != [tokenizer.vocabulary_size] * 2:
            raise ValueError(
                f"The tokenizer has {tokenizer.vocabulary_size} tokens but the model's "
                f"vocabulary_size is {model.vocabulary_size}: it is not the tokenizer the "
                "model was trained with. Load the vocab.txt saved with the model."
            )
        if max_source_length is None:
            max_source_length = model.max_sequence_length
        if (
            isinstance(max_source_length, bool)
            or not isinstance(max_source_length, int)
            or not 2 <= max_source_length <= model.max_sequence_length
        ):
            raise ValueError(
                "`max_source_length` must be an integer in [2, max_sequence_length="
                f"{model.max_sequence_length}]; received max_source_length="
                f"{max_source_length!r}."
            )
        self.tokenizer = tokenizer
        self.model = model
        self.max_source_length = max_source_length
        self.max_length = model._check_max_length(max_length)
        self.sampler = get_sampler(sampler, num_beams=num_beams)

    def encode(self, texts):
        """Strings (B,) -> (model inputs, empty-source flags (B,), number of cut sources)."""
        return source_inputs(self.tokenizer, texts, self.max_source_length)

    def decode(self, token_ids, empty):
        """Generated ids (B, L) -> readable strings (B,); "" where the source was empty."""
        return output_texts(self.tokenizer, token_ids, empty)

    def translate(self, texts, batch_size: int = 32) -> list[str]:
        """Output strings for a list of source strings (or one string)."""
        single = isinstance(texts, (str, bytes))
        texts, _ = BertTokenizer._as_strings(texts, "texts")
        outputs, cut = [], 0
        for start in range(0, int(texts.shape[0]), batch_size):
            inputs, empty, batch_cut = self.encode(texts[start : start + batch_size])
            cut += int(batch_cut)
            ids = self.model.generate(
                {name: value.numpy() for name, value in inputs.items()},
                self.max_length,
                sampler=self.sampler,
            )
            outputs.extend(t.decode("utf-8") for t in self.decode(ids, empty).numpy())
        if cut:
            warnings.warn(
                f"{cut} of {len(outputs)} sources are longer than max_source_length="
                f"{self.max_source_length} tokens with [SEP] and were cut; their ends were "
                "not translated.",
                stacklevel=2,
            )
        return outputs[0] if single else outputs

    def serve(self, texts):
        """The graph behind the SavedModel: strings (B,) -> {"output_text": (B,)}.

        Traceable (a `tf.function` with a (None,) string signature); sources
        longer than `max_source_length` are cut without a warning.
        """
        inputs, empty, _ = self.encode(texts)
        ids = self.model.generate_tokens(inputs, self.max_length, self.sampler)
        return {"output_text": self.decode(ids, empty), "token_ids": ids}

    def scores(self, pairs, batch_size: int = 32) -> dict:
        """Held-out scores of (source, reference) pairs: corpus BLEU (sacrebleu's)
        and ROUGE-L (rouge-score's), plus the outputs."""
        from tfbert.text.generation_scores import corpus_bleu, rouge_l

        sources = [source for source, _ in pairs]
        references = [reference for _, reference in pairs]
        outputs = self.translate(sources, batch_size=batch_size)
        return {
            "bleu": corpus_bleu(outputs, references),
            "rouge_l": rouge_l(outputs, references),
            "outputs": outputs,
        }
