"""The compression recipe for a fine-tuned sentence classifier:
teacher -> distilled student -> heads and FFN neurons pruned, and
magnitude sparsity (unstructured, block, 2:4) fine-tuned with the dense
model as its teacher.

Each step is a plain function over Keras models and NumPy token-id arrays,
so it runs inside `tfbert compress`, the quickstart and
benchmarks/bench_compression.py alike; int8 and the measurements are the
export tier's (`tfbert.export.compression_report`).
"""

import keras
import numpy as np

from tfbert.compression.bert_distiller import BertDistiller
from tfbert.compression.hidden_state_distillation import HiddenStateDistillation
from tfbert.compression.magnitude_pruning import prune_low_magnitude, strip_pruning
from tfbert.compression.pruning_callbacks import UpdatePruningStep
from tfbert.compression.pruning_schedule import ConstantSparsity, PolynomialDecay
from tfbert.compression.structured_pruning import (
    gradient_scores,
    least_important,
    prune_ffn,
    prune_heads,
)
from tfbert.compression.student import student_from_teacher
from tfbert.models import BertClassifier
from tfbert.training import WarmupPolynomialDecay, create_adamw


def _optimizer(learning_rate: float, examples: int, batch_size: int, epochs: int):
    steps = max(1, epochs * -(-examples // batch_size))
    return create_adamw(WarmupPolynomialDecay(learning_rate, max(1, steps // 10), steps))


def _logits_loss(temperature: float):
    # KLDivergence, not the "kl_divergence" string (see BertDistiller).
    return keras.distillation.LogitsDistillation(temperature, loss=keras.losses.KLDivergence())


def _distill(
    teacher,
    student,
    x,
    y,
    epochs,
    batch_size,
    learning_rate,
    temperature,
    layer_mapping,
    callbacks=(),
):
    """Distills `teacher` into `student` on `x` (with labels `y`, or none)."""
    losses = [_logits_loss(temperature)]
    if layer_mapping:
        losses.append(HiddenStateDistillation(layer_mapping))
    examples = len(next(iter(x.values())))
    distiller = BertDistiller(
        teacher,
        student,
        losses,
        student_loss_weight=0.5 if y is not None else 0.0,
    )
    distiller.compile(optimizer=_optimizer(learning_rate, examples, batch_size, epochs))
    distiller.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=list(callbacks), verbose=0)
    return distiller.student


def _fine_tune(model, teacher, x, y, epochs, batch_size, learning_rate, temperature, callbacks=()):
    """Fine-tunes `model` on labelled `x`, `y`: distilled from `teacher` when given
    (logits at `temperature`, gold labels at half weight), else on the labels."""
    if teacher is not None:
        return _distill(
            teacher,
            model,
            x,
            y,
            epochs,
            batch_size,
            learning_rate,
            temperature,
            layer_mapping=None,
            callbacks=callbacks,
        )
    model.compile(optimizer=_optimizer(learning_rate, len(y), batch_size, epochs))
    model.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=list(callbacks), verbose=0)
    return model


def distill_student(
    teacher: BertClassifier,
    train_x: dict,
    train_y,
    layers,
    unlabeled_x: dict | None = None,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    temperature: float = 2.0,
) -> BertClassifier:
    """A `BertClassifier` with `layers` of the teacher's blocks, distilled from it.

    DistilBERT's initialisation (`student_from_teacher`, the teacher's
    embeddings, pooler and head copied), then TinyBERT's two sources of
    signal: first the teacher's soft labels and block outputs on
    `unlabeled_x` (in-domain text without labels, e.g. IMDB sentences for
    Rotten Tomatoes), then on the labelled `train_x` with the gold labels
    at half weight. Hidden states are matched block for block: student
    block j to the teacher block it was copied from.

    Args:
        teacher: fine-tuned `BertClassifier`; frozen.
        train_x, train_y: token-id dict (N, T) and int labels (N,).
        layers: teacher block indices the student keeps, e.g. [0, 2, 4].
        unlabeled_x: optional token-id dict of in-domain text.
        epochs, batch_size, learning_rate: of each phase (AdamW, warmup and
            linear decay).
        temperature: float, default 2.0, of the logits loss.

    Example:
        student = distill_student(teacher, x, y, layers=[0, 2, 4], unlabeled_x=imdb_x)
    """
    backbone = student_from_teacher(teacher.backbone, layers)
    student = BertClassifier(
        backbone, teacher.num_classes, dropout=teacher.dropout, pooling=teacher.pooling
    )
    student.logits_dense.set_weights(teacher.logits_dense.get_weights())
    mapping = {student_layer: teacher_layer for student_layer, teacher_layer in enumerate(layers)}
    settings = dict(
        batch_size=batch_size,
        learning_rate=learning_rate,
        temperature=temperature,
        layer_mapping=mapping,
    )
    if unlabeled_x is not None:
        student = _distill(teacher, student, unlabeled_x, None, epochs, **settings)
    return _distill(teacher, student, train_x, np.asarray(train_y), epochs, **settings)


def prune_structure(
    model: BertClassifier,
    train_x: dict,
    train_y,
    head_fraction: float = 0.3,
    ffn_fraction: float = 0.3,
    teacher: BertClassifier | None = None,
    score_examples: int = 512,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    temperature: float = 2.0,
) -> tuple[BertClassifier, dict]:
    """Removes the least important heads and FFN neurons, then fine-tunes.

    Importance is Michel et al.'s, on the first `score_examples` training
    examples; `head_fraction` of all heads and `ffn_fraction` of all
    neurons go (ranked over layers, each layer's scores normalised; every
    layer keeps one). The smaller model is then fine-tuned on the training
    data, distilled from `teacher` when given (logits at `temperature`, gold
    labels at half weight), else on the labels alone.

    Returns:
        `(pruned model, {"heads": {layer: [indices]}, "neurons": {...}})`.

    Example:
        smaller, removed = prune_structure(student, x, y, 0.3, 0.3, teacher=teacher)
    """
    for name, fraction in (("head_fraction", head_fraction), ("ffn_fraction", ffn_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1); received {name}={fraction!r}.")
    train_y = np.asarray(train_y)
    score = {k: v[:score_examples] for k, v in train_x.items()}
    batches = [
        ({k: v[i : i + batch_size] for k, v in score.items()}, train_y[i : i + batch_size])
        for i in range(0, len(train_y[:score_examples]), batch_size)
    ]

    def loss(y, logits):
        return keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)

    def scored(values):  # a mean over the batch, as the model's compiled loss is
        return lambda y, logits: keras.ops.mean(values(y, logits))

    blocks = model.backbone.transformer_layers
    # One pass gives both (head_importance and ffn_importance each make it).
    head_scores, neuron_scores, _ = gradient_scores(model, batches, loss=scored(loss))
    heads = least_important(
        head_scores, int(round(head_fraction * sum(block.num_heads for block in blocks)))
    )
    neurons = least_important(
        neuron_scores, int(round(ffn_fraction * sum(block.intermediate_dim for block in blocks)))
    )
    pruned = prune_ffn(prune_heads(model, heads), neurons)
    if epochs:
        pruned = _fine_tune(
            pruned, teacher, train_x, train_y, epochs, batch_size, learning_rate, temperature
        )
    return pruned, {"heads": heads, "neurons": neurons}


def sparsify(
    model: BertClassifier,
    train_x: dict,
    train_y,
    sparsity: float = 0.5,
    sparsity_m_by_n=None,
    block_size=(1, 1),
    teacher: BertClassifier | None = None,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    temperature: float = 2.0,
    ramp: float = 0.7,
) -> BertClassifier:
    """`model` with magnitude-pruned kernels, fine-tuned while the sparsity grows.

    `prune_low_magnitude` with Zhu & Gupta's cubic ramp (`PolynomialDecay`
    from 0 to `sparsity` over the first `ramp` of the steps, masks updated
    20 times), or with `sparsity_m_by_n` (e.g. (2, 4)) a fixed pattern set
    at the first step and refreshed 10 times (the pattern sets the
    sparsity, m/n; `sparsity` is not read). Fine-tuning is distillation
    from `teacher` when given (usually the dense model itself: logits at
    `temperature`, gold labels at half weight), else on the labels alone.
    The dense model is left as it was.

    Returns:
        the stripped model (`strip_pruning`): same class and config, the
        pruned weights exact zeros, ready to save or export.

    Example:
        sparse = sparsify(classifier, x, y, sparsity=0.5, teacher=classifier)
    """
    if not 0.0 < ramp <= 1.0:
        raise ValueError(
            "`ramp` is the fraction of steps the sparsity grows over, in (0, 1]; "
            f"received ramp={ramp!r}."
        )
    train_y = np.asarray(train_y)
    steps = max(1, epochs * -(-len(train_y) // batch_size))
    if sparsity_m_by_n is not None:
        m, n = sparsity_m_by_n
        schedule = ConstantSparsity(m / n, 0, frequency=max(1, steps // 10))
    else:
        schedule = PolynomialDecay(
            0.0, sparsity, 0, max(1, int(ramp * steps)), frequency=max(1, steps // 20)
        )
    pruned = prune_low_magnitude(
        model, schedule, block_size=block_size, sparsity_m_by_n=sparsity_m_by_n
    )
    pruned = _fine_tune(
        pruned,
        teacher,
        train_x,
        train_y,
        epochs,
        batch_size,
        learning_rate,
        temperature,
        callbacks=[UpdatePruningStep()],
    )
    return strip_pruning(pruned)
