"""The encoder-decoder Transformer, the causal language model, and their decoding."""

from tfbert.models.transformer.beam_sampler import BeamSampler
from tfbert.models.transformer.causal_language_model import CausalLanguageModel
from tfbert.models.transformer.label_smoothed_cross_entropy import LabelSmoothedCrossEntropy
from tfbert.models.transformer.samplers import SAMPLER_NAMES, get_sampler
from tfbert.models.transformer.token_accuracy import TokenAccuracy
from tfbert.models.transformer.transformer import Transformer
from tfbert.models.transformer.transformer_presets import CAUSAL_LM_PRESETS, TRANSFORMER_PRESETS
from tfbert.models.transformer.translator import Translator

__all__ = [
    "CAUSAL_LM_PRESETS",
    "SAMPLER_NAMES",
    "TRANSFORMER_PRESETS",
    "BeamSampler",
    "CausalLanguageModel",
    "LabelSmoothedCrossEntropy",
    "TokenAccuracy",
    "Transformer",
    "Translator",
    "get_sampler",
]
