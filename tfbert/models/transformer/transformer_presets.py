"""Sizes of the encoder-decoder Transformer and the causal language model, as kwargs."""

# Vaswani et al. (2017), Table 3: base and big, on a 37,000-token shared
# vocabulary (WMT 2014 English-German byte-pair encoding). The paper reports
# 65M and 213M parameters.
TRANSFORMER_PRESETS = {
    "transformer_base": {
        "vocabulary_size": 37000,
        "num_layers": 6,
        "num_heads": 8,
        "hidden_dim": 512,
        "intermediate_dim": 2048,
        "dropout": 0.1,
    },
    "transformer_big": {
        "vocabulary_size": 37000,
        "num_layers": 6,
        "num_heads": 16,
        "hidden_dim": 1024,
        "intermediate_dim": 4096,
        "dropout": 0.3,
    },
    # Sizes that train in minutes on 2 CPU cores.
    "transformer_tiny": {
        "vocabulary_size": 8000,
        "num_layers": 2,
        "num_heads": 4,
        "hidden_dim": 128,
        "intermediate_dim": 512,
        "dropout": 0.1,
    },
    "transformer_small": {
        "vocabulary_size": 8000,
        "num_layers": 3,
        "num_heads": 4,
        "hidden_dim": 256,
        "intermediate_dim": 1024,
        "dropout": 0.1,
    },
}

CAUSAL_LM_PRESETS = {
    "causal_lm_tiny": {
        "vocabulary_size": 8000,
        "num_layers": 2,
        "num_heads": 4,
        "hidden_dim": 128,
        "intermediate_dim": 512,
        "dropout": 0.1,
    },
    "causal_lm_mini": {
        "vocabulary_size": 8000,
        "num_layers": 4,
        "num_heads": 4,
        "hidden_dim": 256,
        "intermediate_dim": 1024,
        "dropout": 0.1,
    },
}


def preset_kwargs(presets: dict, name: str, overrides: dict) -> dict:
    if name not in presets:
        raise ValueError(f"Unknown preset name={name!r}. Available presets: {', '.join(presets)}.")
    return {**presets[name], **overrides}
