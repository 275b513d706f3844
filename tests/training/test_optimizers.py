import keras
import numpy as np

from tfbert.models import BertBackbone
from tfbert.training import create_adamw


def test_adamw_skips_weight_decay_on_layer_norm_and_biases():
    backbone = BertBackbone(
        vocabulary_size=100,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=16,
    )
    optimizer = create_adamw(learning_rate=0.1, weight_decay=0.5)
    optimizer.build(backbone.trainable_variables)
    before = {v.path: v.numpy().copy() for v in backbone.trainable_variables}
    # Zero gradients: only weight decay can move a variable.
    optimizer.apply_gradients(
        [(np.zeros(v.shape, "float32"), v) for v in backbone.trainable_variables]
    )
    for variable in backbone.trainable_variables:
        moved = not np.array_equal(before[variable.path], variable.numpy())
        excluded = variable.name in ("gamma", "beta", "bias")
        assert moved != excluded, variable.path
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.global_clipnorm == 1.0
