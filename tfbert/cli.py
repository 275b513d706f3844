"""The `tfbert` command.

tfbert quickstart   the whole path on the embedded default data
tfbert pretrain     BERT pretraining (MLM + NSP) on your text, on any tf.distribute strategy
tfbert compress     a fine-tuned classifier to a distilled, pruned, int8 student, measured
tfbert export       a saved model to TF Serving (SavedModel), LiteRT and ONNX, each verified
tfbert translate    train / evaluate a seq2seq Transformer (German-English, headlines, your
                    pairs) and translate strings
"""

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _new_run_dir(parent: str) -> str:
    """A fresh `parent/<timestamp>` folder; earlier runs are never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, suffix = os.path.join(parent, stamp), 1
    while os.path.exists(path):
        suffix += 1
        path = os.path.join(parent, f"{stamp}-{suffix}")
    os.makedirs(path)
    return path


class _EpochTable:
    """Collects per-epoch logs from `fit` and prints them as one table."""

    COLUMNS = ("mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy")

    def __init__(self, history):
        self.history = history.history

    def render(self) -> str:
        names = [*self.COLUMNS, *(f"val_{name}" for name in self.COLUMNS)]
        names = [name for name in names if name in self.history]
        lines = ["epoch " + " ".join(f"{name:>16}" for name in names)]
        for epoch in range(len(self.history[names[0]])):
            values = " ".join(f"{self.history[name][epoch]:16.4f}" for name in names)
            lines.append(f"{epoch + 1:5d} {values}")
        return "\n".join(lines)


def quickstart(args) -> int:
    """Pretrains a small BERT (MLM + NSP) with `fit` on IMDB reviews."""
    import keras

    from tfbert.text import build_vocabulary, movie_reviews, write_pretraining_text
    from tfbert.training import PretrainingConfig, pretrain, resolve_precision

    run_dir = _new_run_dir(args.output_dir)
    keras.utils.set_random_seed(args.seed)
    precision = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(precision)
    print(f"tfbert quickstart -> {run_dir} (precision {precision})")

    print(f"[1/7] Corpus: {args.documents} IMDB reviews from the movie-reviews package")
    reviews = [text for text, _ in movie_reviews("imdb")[: args.documents]]
    held_out = max(2, len(reviews) // 20)
    train_file = os.path.join(run_dir, "pretraining_train.txt")
    validation_file = os.path.join(run_dir, "pretraining_validation.txt")
    sentences = write_pretraining_text(reviews[:-held_out], train_file)
    write_pretraining_text(reviews[-held_out:], validation_file)
    print(f"      {sentences} sentences, one per line, documents separated by blank lines")

    print(f"[2/7] Vocabulary: WordPiece, at most {args.vocabulary_size} tokens, uncased")
    vocabulary_file = os.path.join(run_dir, "vocab.txt")
    started = time.perf_counter()
    vocabulary = build_vocabulary(
        reviews[:-held_out], args.vocabulary_size, vocabulary_file=vocabulary_file
    )
    print(
        f"      {len(vocabulary)} tokens learned from the training reviews in "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(f"[3/7] Pretraining {args.preset} (masked LM + next sentence) with fit")
    print("      the same recipe as `tfbert pretrain`, whole-word masking")
    config = PretrainingConfig(
        data=[train_file],
        validation_data=[validation_file],
        vocabulary=vocabulary_file,
        output_dir=run_dir,
        preset=args.preset,
        sequence_length=args.sequence_length,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps_per_epoch=args.max_steps,
        learning_rate=args.learning_rate,
        strategy=args.strategy,
        precision=precision,
        seed=args.seed,
        verbose=args.verbose,
        backup=False,  # each quickstart run is new; nothing to resume
    )
    started = time.perf_counter()
    pretrainer, history = pretrain(config)
    elapsed = time.perf_counter() - started
    backbone = pretrainer.backbone
    print(f"      {backbone.count_params():,} backbone parameters")
    table = _EpochTable(history)
    print(table.render())
    mlm = history.history["mlm_loss"]
    sequences = history.history["examples_per_second"][-1]
    print(
        f"      masked-LM loss {mlm[0]:.3f} -> {mlm[-1]:.3f} in {elapsed:.0f} s "
        f"({sequences:.0f} sequences/s in the last epoch)"
    )
    print(f"      saved {os.path.join(run_dir, 'pretrainer.keras')} and TensorBoard logs in logs/")

    print("[4/7] Fine-tuning the pretrained backbone: Rotten Tomatoes sentiment")
    sentiment = _fine_tune_sentiment(backbone, vocabulary_file, args)
    sentiment_path = os.path.join(run_dir, "sentiment.keras")
    sentiment.save(sentiment_path)

    print("[5/7] Raw text in, labels out (TextClassifier, tokenizer inside the model)")
    examples = ["A warm, funny and moving film.", "Dull, overlong and badly acted."]
    for text, label in zip(examples, sentiment.predict_labels(examples), strict=True):
        print(f"      {label:>8}: {text}")
    print(f"      saved {sentiment_path}\n      {vocabulary_file}")

    print("[6/7] Export: TF Serving SavedModel, LiteRT, ONNX; each checked against Keras")
    from tfbert.export import export_artifacts

    texts = [text for text, _ in movie_reviews("rotten_tomatoes")[:8]]
    rows = export_artifacts(sentiment, os.path.join(run_dir, "export"), texts)
    print(render_export_table(rows))

    print("[7/7] Compression: distilled student, heads and FFN pruned, int8 LiteRT")
    train, held_out = _sentiment_split(args.seed, args.finetune_examples)
    _compress(sentiment, train, held_out, os.path.join(run_dir, "compressed"), args)
    return 0


def _sentiment_split(seed: int, limit: int = 0):
    """The fixed 80/20 Rotten Tomatoes split: (train, held_out) lists of (text, label)."""
    import numpy as np

    from tfbert.text import movie_reviews

    reviews = movie_reviews("rotten_tomatoes")
    order = np.random.default_rng(seed).permutation(len(reviews))
    if limit:
        order = order[:limit]
    cut = int(0.8 * len(order))
    return [reviews[i] for i in order[:cut]], [reviews[i] for i in order[cut:]]


def _in_domain_sentences(count: int) -> list[str]:
    """`count` sentences of IMDB reviews (unlabelled in-domain text for distillation)."""
    from tfbert.compression import in_domain_sentences
    from tfbert.text import movie_reviews

    if count <= 0:
        return []
    return in_domain_sentences((text for text, _ in movie_reviews("imdb")), max_sentences=count)


def _compress(teacher, train, held_out, output_dir, args) -> list[dict]:
    """Runs `compress_classifier` with the flags of `tfbert compress`; prints its table."""
    from tfbert.export.compression_report import (
        compress_classifier,
        plot_compression,
        render_compression_table,
    )

    num_layers = teacher.classifier.backbone.num_layers
    layers = args.student_layers or list(range(0, num_layers, 2))
    unlabeled = _in_domain_sentences(args.unlabeled_sentences)
    print(
        f"      teacher {num_layers} blocks -> student blocks {layers}; {len(train)} labelled "
        f"sentences, {len(unlabeled)} unlabelled IMDB sentences, {len(held_out)} held out"
    )
    rows = compress_classifier(
        teacher,
        [text for text, _ in train],
        [label for _, label in train],
        [text for text, _ in held_out],
        [label for _, label in held_out],
        output_dir,
        student_layers=layers,
        unlabeled_texts=unlabeled,
        head_fraction=args.prune_heads,
        ffn_fraction=args.prune_ffn,
        epochs=args.distill_epochs,
        prune_epochs=args.prune_epochs,
        batch_size=args.batch_size,
        learning_rate=args.distill_learning_rate,
        quantization=args.student_quantization,
    )
    print(render_compression_table(rows))
    plot = plot_compression(rows, os.path.join(output_dir, "compression.png"))
    with open(os.path.join(output_dir, "compression.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)
    print(f"      plot {plot}\n      student {os.path.join(output_dir, 'student_pruned.keras')}")
    return rows


def compress_command(args) -> int:
    """Compresses a saved TextClassifier on Rotten Tomatoes or the user's files."""
    import keras

    from tfbert.models import TextClassifier
    from tfbert.text import read_labeled_texts

    teacher = keras.saving.load_model(args.model)
    if not isinstance(teacher, TextClassifier):
        raise SystemExit(
            f"tfbert compress: {args.model} holds a {type(teacher).__name__}; it needs a "
            "TextClassifier (tokenizer + classifier), e.g. quickstart's sentiment.keras."
        )
    if bool(args.train) != bool(args.validation):
        raise SystemExit("tfbert compress: give both --train and --validation, or neither.")
    if args.train:
        pairs = []
        for path in (args.train, args.validation):
            texts, labels = read_labeled_texts(path, teacher.label_names)
            pairs.append(list(zip(texts, labels, strict=True)))
        train, held_out = pairs
    else:
        train, held_out = _sentiment_split(args.seed)
    run_dir = _new_run_dir(args.output_dir)
    print(f"tfbert compress {args.model} -> {run_dir}")
    _compress(teacher, train, held_out, run_dir, args)
    return 0


def _add_compression_flags(parser, unlabeled_sentences: int, learning_rate: float) -> None:
    def layers(text):
        return [int(index) for index in text.split(",")]

    parser.add_argument(
        "--student-layers",
        type=layers,
        help="teacher blocks the student keeps, e.g. 0,2,4 (default: every other one)",
    )
    parser.add_argument(
        "--unlabeled-sentences",
        type=int,
        default=unlabeled_sentences,
        help="IMDB sentences the teacher labels for the student (0: none)",
    )
    parser.add_argument("--prune-heads", type=float, default=0.3, help="share of heads removed")
    parser.add_argument(
        "--prune-ffn", type=float, default=0.3, help="share of FFN neurons removed"
    )
    parser.add_argument("--distill-epochs", type=int, default=1, help="per distillation phase")
    parser.add_argument("--prune-epochs", type=int, default=1, help="fine-tuning after pruning")
    parser.add_argument(
        "--distill-learning-rate",
        type=float,
        default=learning_rate,
        help="peak rate of distillation (half of it after pruning)",
    )
    parser.add_argument(
        "--student-quantization", default="dynamic_int8", choices=["dynamic_int8", "int8"]
    )


def _fine_tune_sentiment(backbone, vocabulary_file, args):
    """Fine-tunes `backbone` on a fixed 80/20 Rotten Tomatoes split; returns a TextClassifier."""
    import numpy as np

    from tfbert.models import BertClassifier, TextClassifier
    from tfbert.text import BertTokenizer
    from tfbert.training import WarmupPolynomialDecay, create_adamw

    train, held_out = _sentiment_split(args.seed, args.finetune_examples)
    tokenizer = BertTokenizer(vocabulary_file, sequence_length=64)

    def arrays(pairs):
        x = tokenizer([text for text, _ in pairs])
        return {k: v.numpy() for k, v in x.items()}, np.array([label for _, label in pairs])

    (x, y), (test_x, test_y) = arrays(train), arrays(held_out)
    classifier = BertClassifier(backbone, num_classes=2)
    steps = args.finetune_epochs * -(-len(y) // args.batch_size)
    classifier.compile(
        optimizer=create_adamw(
            WarmupPolynomialDecay(args.finetune_learning_rate, max(1, steps // 10), steps)
        )
    )
    print(f"      {len(y)} sentences to train on, {len(test_y)} held out")
    classifier.fit(
        x, y, batch_size=args.batch_size, epochs=args.finetune_epochs, verbose=args.verbose
    )
    _, accuracy = classifier.evaluate(test_x, test_y, verbose=0)
    print(f"      held-out accuracy {accuracy:.3f} (chance 0.5)")
    return TextClassifier(tokenizer, classifier, label_names=["negative", "positive"])


def pretrain_command(args) -> int:
    """Runs `tfbert.training.pretrain` from a config file and/or flags."""
    from tfbert.training import PretrainingConfig, pretrain

    given = {
        name: value
        for name, value in vars(args).items()
        if name in _PRETRAIN_FIELDS and value is not None
    }
    if args.config:
        config = PretrainingConfig.from_json(args.config, **given)
    else:
        missing = [
            f"--{name}" for name in ("data", "vocabulary", "output_dir") if name not in given
        ]
        if missing:
            raise SystemExit(
                f"tfbert pretrain: give {', '.join(m.replace('_', '-') for m in missing)} "
                "or a --config file."
            )
        config = PretrainingConfig(**given)
    print(f"tfbert pretrain -> {config.output_dir}")
    print(json.dumps(dataclasses.asdict(config), indent=2))
    started = time.perf_counter()
    _, history = pretrain(config)
    mlm = history.history["mlm_loss"]
    print(
        f"masked-LM loss {mlm[0]:.3f} -> {mlm[-1]:.3f} in {time.perf_counter() - started:.0f} s; "
        f"model in {os.path.join(config.output_dir, 'pretrainer.keras')}"
    )
    return 0


_PRETRAIN_HELP = {
    "data": "BERT-format text files (one sentence per line, blank line between "
    "documents) or TFRecord shards from write_pretraining_tfrecords",
    "vocabulary": "WordPiece vocab.txt",
    "output_dir": "model, checkpoint, backup and TensorBoard logs go here; "
    "a killed run started again with the same folder resumes",
    "batch_size": "global batch (split over replicas)",
    "steps_per_epoch": "0: one pass over the data",
    "strategy": "auto, tpu, multi_worker (TF_CONFIG), mirrored, one_device or cpu",
    "cpu_replicas": "split the CPU into N devices for --strategy mirrored",
    "schedule": "linear, polynomial, inverse_sqrt or constant (after warmup)",
    "warmup_steps": "default: 10%% of the updates",
    "gradient_accumulation_steps": "average N batches per update",
    "precision": "auto, float32, mixed_bfloat16 or mixed_float16",
}
_PRETRAIN_FIELDS = ()


def _add_pretrain_flags(parser) -> None:
    """One flag per `PretrainingConfig` field (names with dashes)."""
    global _PRETRAIN_FIELDS
    from tfbert.training.pretraining import PretrainingConfig

    fields = dataclasses.fields(PretrainingConfig)
    _PRETRAIN_FIELDS = tuple(field.name for field in fields)
    parser.add_argument("--config", help="JSON file of settings (flags override it)")
    for field in fields:
        flag = "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = _PRETRAIN_HELP.get(field.name, "")
        help_text = f"{help_text} (default {default})" if help_text else f"default {default}"
        kind = str(field.type)
        if field.name in ("data", "validation_data"):
            parser.add_argument(flag, nargs="+", help=help_text)
        elif field.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            converter = int if "int" in kind else float if "float" in kind else str
            parser.add_argument(flag, type=converter, help=help_text)


def render_export_table(rows) -> str:
    """The reports of `tfbert.export.export_artifacts` as a table."""
    lines = [
        f"{'artifact':<60} {'size':>10} {'max abs diff':>13} {'labels equal':>13} "
        f"{'batch-1 ms':>11}"
    ]
    for row in rows:
        size, agreement, ms = row["size"], row["label_agreement"], row["batch1_ms"]
        size_text = "-" if size is None else f"{size / 1e6:.1f} MB"
        agreement_text = "-" if agreement is None else f"{agreement:.1%}"
        ms_text = "-" if ms is None else f"{ms:.1f}"
        lines.append(
            f"{row['artifact']:<60} {size_text:>10} {row['max_abs_diff']:>13.2e} "
            f"{agreement_text:>13} {ms_text:>11}"
        )
    return "\n".join(lines)


def export_command(args) -> int:
    import keras

    from tfbert.export import export_artifacts
    from tfbert.export.artifacts import FORMATS
    from tfbert.text import movie_reviews

    model = keras.saving.load_model(args.model)
    reviews = movie_reviews("rotten_tomatoes")
    texts = [text for text, _ in reviews[: args.examples]]
    calibration = None
    if args.calibration_file:
        with open(args.calibration_file, encoding="utf-8") as f:
            calibration = [line.strip() for line in f if line.strip()]
    elif args.quantization == "int8":
        calibration = [text for text, _ in reviews[args.examples : args.examples + 200]]
    rows = export_artifacts(
        model,
        args.output_dir,
        texts,
        formats=FORMATS if args.format == "all" else (args.format,),
        model_name=args.model_name,
        sequence_length=args.sequence_length,
        quantization=None if args.quantization == "float32" else args.quantization,
        include_tokenizer=args.include_tokenizer,
        calibration_texts=calibration,
    )
    print(render_export_table(rows))
    return 0


# Built-in seq2seq data: (loader, max source tokens, max output tokens).
_SEQ2SEQ_DATA = {
    "de-en": ("german_english_pairs", 64, 64),
    "headlines": ("bbc_headlines", 128, 32),
}


def _seq2seq_pairs(args):
    """(train pairs, held-out pairs, default source length, default output length)."""
    from tfbert import text

    if args.train or args.validation:
        if not args.validation:
            raise SystemExit("tfbert translate: --train needs --validation (held-out pairs).")
        if args.action == "train" and not args.train:
            raise SystemExit("tfbert translate train: --validation needs --train.")
        train = text.read_text_pairs(args.train) if args.train else []
        return train, text.read_text_pairs(args.validation), 64, 64
    loader, source_length, output_length = _SEQ2SEQ_DATA[args.data]
    load = getattr(text, loader)
    return load("train"), load("test"), source_length, output_length


def _load_translator(run_dir: str, **overrides):
    import keras

    from tfbert.models import Translator
    from tfbert.text import BertTokenizer

    settings_file = os.path.join(run_dir, "translator.json")
    if not os.path.isfile(settings_file):
        raise SystemExit(
            f"{run_dir} holds no translator.json: pass a folder written by "
            "`tfbert translate train`."
        )
    with open(settings_file, encoding="utf-8") as f:
        settings = {**json.load(f), **{k: v for k, v in overrides.items() if v is not None}}
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    tokenizer = BertTokenizer.from_checkpoint(os.path.join(run_dir, "tokenizer"))
    return Translator(tokenizer, model, **settings)


def _print_scores(translator, held_out, limit: int) -> dict:
    from tfbert.text import corpus_bleu, rouge_l

    held_out = held_out[:limit] if limit else held_out
    started = time.perf_counter()
    scores = translator.scores(held_out)
    seconds = time.perf_counter() - started
    sources = [source for source, _ in held_out]
    references = [reference for _, reference in held_out]
    copy = {"bleu": corpus_bleu(sources, references), "rouge_l": rouge_l(sources, references)}
    print(f"{'held-out pairs':<16} {len(held_out):>8}")
    print(f"{'':<16} {'BLEU':>8} {'ROUGE-L':>8}")
    print(f"{'model':<16} {scores['bleu']:8.2f} {scores['rouge_l']:8.4f}")
    print(f"{'copy source':<16} {copy['bleu']:8.2f} {copy['rouge_l']:8.4f}")
    print(f"decoded in {seconds:.1f} s ({len(held_out) / seconds:.1f} pairs/s)")
    for (source, reference), output in list(zip(held_out, scores["outputs"], strict=True))[:3]:
        print(f"  {source[:70]!r}\n    -> {output!r}\n    reference {reference!r}")
    return {"bleu": scores["bleu"], "rouge_l": scores["rouge_l"], "copy_source": copy}


def translate_command(args) -> int:
    if args.action == "train":
        return _translate_train(args)
    if args.action == "evaluate":  # a bad file fails before the model loads
        _, held_out, _, _ = _seq2seq_pairs(args)
    translator = _load_translator(
        args.run_dir, sampler=args.sampler, num_beams=args.num_beams, max_length=args.max_length
    )
    if args.action == "evaluate":
        _print_scores(translator, held_out, args.examples)
        return 0
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    for output in translator.translate(texts):
        print(output)
    return 0


def _translate_train(args) -> int:
    import keras

    from tfbert.models import Transformer, Translator
    from tfbert.text import seq2seq_dataset, seq2seq_tokenizer
    from tfbert.training import WarmupInverseSqrtDecay, resolve_precision, resolve_strategy

    train, held_out, source_length, output_length = _seq2seq_pairs(args)
    source_length = args.max_source_length or source_length
    output_length = args.max_length or output_length
    precision = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(precision)
    strategy = resolve_strategy(args.strategy)
    run_dir = _new_run_dir(args.output_dir)
    print(
        f"tfbert translate train -> {run_dir} ({len(train)} pairs, {len(held_out)} held "
        f"out, precision {precision}, {strategy.num_replicas_in_sync} replica(s))"
    )
    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    tokenizer = seq2seq_tokenizer(train, args.vocabulary_size)
    print(
        f"vocabulary: {tokenizer.vocabulary_size} pieces ({time.perf_counter() - started:.0f} s)"
    )
    batches = seq2seq_dataset(
        train, tokenizer, source_length, output_length, args.tokens_per_batch, seed=args.seed
    ).cache()
    with strategy.scope():
        model = Transformer.from_preset(
            args.preset,
            vocabulary_size=tokenizer.vocabulary_size,
            max_sequence_length=max(source_length, output_length),
        )
        schedule = WarmupInverseSqrtDecay(args.learning_rate, args.warmup_steps)
        model.compile(optimizer=keras.optimizers.Adam(schedule, beta_2=0.98, epsilon=1e-9))
    started = time.perf_counter()
    model.fit(batches, epochs=args.epochs, verbose=args.verbose)
    print(f"trained {args.epochs} epochs in {time.perf_counter() - started:.0f} s")

    model.save(os.path.join(run_dir, "model.keras"))
    tokenizer.save_checkpoint(os.path.join(run_dir, "tokenizer"))
    settings = {
        "max_source_length": source_length,
        "max_length": output_length,
        "sampler": args.sampler,
        "num_beams": args.num_beams,
    }
    with open(os.path.join(run_dir, "translator.json"), "x", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)
    translator = Translator(tokenizer, model, **settings)
    scores = _print_scores(translator, held_out, args.examples)
    with open(os.path.join(run_dir, "scores.json"), "x", encoding="utf-8") as f:
        json.dump(scores, f, indent=2)
    if args.export:
        from tfbert.export import check_ops, saved_model

        path = saved_model(translator, os.path.join(run_dir, "saved_model"))
        check_ops(path, "tf-serving")
        print(f"SavedModel (strings in, strings out; ops checked for TF Serving): {path}")
    return 0


def _add_translate_flags(parser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    training = actions.add_parser(
        "train",
        help="learn a shared WordPiece vocabulary, train a Transformer with fit, score it",
        description="Trains on German-English dictionary sentences (--data de-en), BBC "
        "headlines (--data headlines) or your CSV/TSV files with source,target columns, "
        "then prints held-out BLEU and ROUGE-L beside the copy-source baseline.",
    )
    evaluating = actions.add_parser("evaluate", help="held-out BLEU and ROUGE-L of a run")
    translating = actions.add_parser(
        "text", help="translate the given strings (or standard input, one per line)"
    )
    for sub in (training, evaluating):
        sub.add_argument("--data", default="de-en", choices=sorted(_SEQ2SEQ_DATA))
        sub.add_argument("--train", help="CSV/TSV with source,target columns (your pairs)")
        sub.add_argument("--validation", help="held-out CSV/TSV, with --train")
        sub.add_argument(
            "--examples", type=int, default=500, help="held-out pairs to score (0: all)"
        )
    for sub in (evaluating, translating):
        sub.add_argument("run_dir", help="a folder written by `tfbert translate train`")
    translating.add_argument("texts", nargs="*", help="source strings")
    for sub in (training, evaluating, translating):
        default = "beam" if sub is training else None
        sub.add_argument("--sampler", default=default, help="beam, greedy, top_k or top_p")
        sub.add_argument("--num-beams", type=int, default=4 if sub is training else None)
        sub.add_argument("--max-length", type=int, help="output tokens, start token included")
    training.add_argument("--output-dir", default="runs/translate")
    training.add_argument("--preset", default="transformer_tiny")
    training.add_argument("--vocabulary-size", type=int, default=8000)
    training.add_argument("--max-source-length", type=int)
    training.add_argument("--tokens-per-batch", type=int, default=4096)
    training.add_argument("--epochs", type=int, default=10)
    training.add_argument("--learning-rate", type=float, default=2e-3)
    training.add_argument("--warmup-steps", type=int, default=400)
    training.add_argument("--precision", default="auto")
    training.add_argument("--strategy", default="auto")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    training.add_argument(
        "--export", action="store_true", help="also write the strings-in SavedModel"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfbert", description="BERT on Keras 3: pretrain, fine-tune, compress, export."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser(
        "quickstart", help="run the whole path on the embedded default data"
    )
    start.add_argument(
        "--output-dir",
        default="runs/quickstart",
        help="parent folder; each run gets a new timestamped folder",
    )
    start.add_argument(
        "--documents", type=int, default=2000, help="IMDB reviews to pretrain on (5%% held out)"
    )
    start.add_argument(
        "--vocabulary-size", type=int, default=8000, help="WordPiece tokens to learn"
    )
    start.add_argument("--preset", default="bert_tiny")
    start.add_argument("--sequence-length", type=int, default=128)
    start.add_argument("--batch-size", type=int, default=32)
    start.add_argument("--epochs", type=int, default=2)
    start.add_argument(
        "--max-steps", type=int, default=0, help="cap on batches per epoch (0: all)"
    )
    start.add_argument("--learning-rate", type=float, default=1e-3)
    start.add_argument("--finetune-epochs", type=int, default=2)
    start.add_argument(
        "--finetune-learning-rate",
        type=float,
        default=3e-4,
        help="peak rate of the sentiment fine-tuning (small models want more than BERT's 1e-4)",
    )
    start.add_argument(
        "--finetune-examples",
        type=int,
        default=0,
        help="Rotten Tomatoes sentences to use, 20%% held out (0: all 8,530)",
    )
    start.add_argument(
        "--precision", default="auto", help="auto, float32, mixed_bfloat16 or mixed_float16"
    )
    start.add_argument("--seed", type=int, default=0)
    start.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=[0, 1, 2],
        help="Keras fit verbosity (1: progress bar)",
    )
    start.add_argument(
        "--strategy", default="auto", help="tf.distribute strategy kind (see tfbert pretrain)"
    )
    _add_compression_flags(start, unlabeled_sentences=2000, learning_rate=3e-4)
    start.set_defaults(run=quickstart)

    pretraining = commands.add_parser(
        "pretrain",
        help="pretrain BERT (masked LM + next sentence) on your text",
        description="Pretrains BERT with Keras fit under any tf.distribute strategy. "
        "Every setting is a flag or a key of the --config JSON file.",
    )
    _add_pretrain_flags(pretraining)
    pretraining.set_defaults(run=pretrain_command)

    compressing = commands.add_parser(
        "compress",
        help="distill, prune and quantize a saved TextClassifier; measure every step",
        description="Teacher -> distilled student (some of its blocks) -> least important "
        "heads and FFN neurons removed -> int8 LiteRT, with parameters, size, LiteRT "
        "latency (batch 1, 128 tokens) and held-out accuracy per step, and a plot.",
    )
    compressing.add_argument("model", help="a .keras TextClassifier (e.g. quickstart's)")
    compressing.add_argument(
        "--output-dir", default="runs/compress", help="parent folder; each run gets a new one"
    )
    compressing.add_argument(
        "--train", help="CSV/TSV with text,label columns (default: Rotten Tomatoes, 80%%)"
    )
    compressing.add_argument("--validation", help="held-out CSV/TSV (with --train)")
    compressing.add_argument("--batch-size", type=int, default=32)
    compressing.add_argument("--seed", type=int, default=0)
    _add_compression_flags(compressing, unlabeled_sentences=4000, learning_rate=1e-4)
    compressing.set_defaults(run=compress_command)

    exporting = commands.add_parser(
        "export",
        help="export a saved TextClassifier to SavedModel, LiteRT and ONNX, verified",
    )
    exporting.add_argument("model", help="a .keras TextClassifier (e.g. quickstart's)")
    exporting.add_argument("--output-dir", required=True)
    exporting.add_argument(
        "--format", default="all", choices=["saved_model", "litert", "onnx", "all"]
    )
    exporting.add_argument(
        "--model-name",
        default="model",
        help="SavedModel folder under --output-dir (TF Serving's model name)",
    )
    exporting.add_argument(
        "--sequence-length", type=int, help="LiteRT input length (default: the tokenizer's)"
    )
    exporting.add_argument(
        "--quantization",
        default="float32",
        choices=["float32", "float16", "dynamic_int8", "int8"],
        help="LiteRT weights (and, for int8, activations)",
    )
    exporting.add_argument(
        "--calibration-file",
        help="int8: text file, one training text per line (default: 200 Rotten Tomatoes "
        "sentences)",
    )
    exporting.add_argument(
        "--include-tokenizer",
        action="store_true",
        help="LiteRT takes raw text (the app registers tensorflow-text's LiteRT ops)",
    )
    exporting.add_argument(
        "--examples",
        type=int,
        default=64,
        help="Rotten Tomatoes sentences to verify on (a quantized LiteRT model must keep "
        "96%% of the labels)",
    )
    exporting.set_defaults(run=export_command)

    translating = commands.add_parser(
        "translate",
        help="train and evaluate a seq2seq Transformer; translate strings",
    )
    _add_translate_flags(translating)
    translating.set_defaults(run=translate_command)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import tfbert  # noqa: F401  (pins the Keras backend before anything else)

    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
