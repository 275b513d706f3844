"""Architecture sizes of BERT (Devlin et al., 2018) and its smaller siblings
(Turc et al., 2019, "Well-Read Students Learn Better"). Random init; no weights.

Each preset is a plain dict of `BertBackbone` kwargs. Heads are hidden_dim / 64
and intermediate_dim is 4 * hidden_dim, as in both papers.
"""

_BASE = {"vocabulary_size": 30522, "max_sequence_length": 512, "num_segments": 2}


def _preset(num_layers: int, hidden_dim: int) -> dict:
    return {
        **_BASE,
        "num_layers": num_layers,
        "hidden_dim": hidden_dim,
        "num_heads": hidden_dim // 64,
        "intermediate_dim": 4 * hidden_dim,
    }


BERT_PRESETS = {
    "bert_tiny": _preset(2, 128),
    "bert_mini": _preset(4, 256),
    "bert_small": _preset(4, 512),
    "bert_medium": _preset(8, 512),
    "bert_base": _preset(12, 768),
    "bert_large": _preset(24, 1024),
}
