"""What every model built on a `BertBackbone` shares: inputs, heads, config."""

import keras

from tfbert.models.bert.bert_backbone import INPUT_NAMES, BertBackbone
from tfbert.models.distributed_trainer import DistributedTrainer


def check_backbone(backbone):
    if not isinstance(backbone, BertBackbone):
        raise ValueError(
            f"`backbone` must be a tfbert.models.BertBackbone; received {type(backbone).__name__}."
        )


def backbone_inputs(*extra_names) -> dict:
    """Symbolic int32 (batch, length) inputs named as the tokenizer's outputs (and extras)."""
    return {
        name: keras.Input(shape=(None,), dtype="int32", name=name)
        for name in (*INPUT_NAMES, *extra_names)
    }


def head_dense(backbone, units: int, name: str) -> keras.layers.Dense:
    """A head's dense layer, initialised and typed like the backbone's own layers."""
    return keras.layers.Dense(
        units,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=backbone.initializer_range),
        dtype=backbone.dtype_policy,
        name=name,
    )


class BackboneModel(DistributedTrainer):
    """Config round trip for models whose constructor takes a backbone.

    Subclasses list their other constructor arguments in `CONFIG_ARGS`.
    """

    CONFIG_ARGS: tuple = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The backbone's policy, which the heads use (Functional drops `dtype`).
        self.dtype_policy = self.backbone.dtype_policy

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            **{arg: getattr(self, arg) for arg in self.CONFIG_ARGS},
            **self.pruning_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)
