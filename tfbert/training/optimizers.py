"""Optimizers configured the way BERT is trained."""

import keras

# Variables that get no weight decay: LayerNorm scale/offset and every bias.
NO_WEIGHT_DECAY = ("gamma", "beta", "bias")


def create_adamw(
    learning_rate,
    weight_decay: float = 0.01,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-6,
    global_clipnorm: float | None = 1.0,
) -> keras.optimizers.AdamW:
    """AdamW with BERT's settings and weight-decay exclusions (LayerNorm, biases).

    Args:
        learning_rate: float or a `LearningRateSchedule`.
        weight_decay: float, default 0.01.
        beta_1, beta_2, epsilon: Adam constants, BERT's defaults.
        global_clipnorm: float or None, default 1.0. Global-norm gradient clipping.
    """
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        global_clipnorm=global_clipnorm,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer
