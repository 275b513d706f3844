"""Keras layers: attention, masks, embeddings, Transformer blocks, heads."""

from tfbert.layers.bert_embeddings import BertEmbeddings
from tfbert.layers.masked_dense import MaskedDense
from tfbert.layers.masked_einsum_dense import MaskedEinsumDense
from tfbert.layers.masked_lm_head import MaskedLMHead
from tfbert.layers.masks import compute_causal_mask, merge_attention_masks
from tfbert.layers.multi_head_attention import MultiHeadAttention
from tfbert.layers.position_embedding import PositionEmbedding
from tfbert.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from tfbert.layers.token_and_position_embedding import TokenAndPositionEmbedding
from tfbert.layers.transformer_decoder_block import TransformerDecoderBlock
from tfbert.layers.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "BertEmbeddings",
    "MaskedDense",
    "MaskedEinsumDense",
    "MaskedLMHead",
    "MultiHeadAttention",
    "PositionEmbedding",
    "SinusoidalPositionEncoding",
    "TokenAndPositionEmbedding",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "compute_causal_mask",
    "merge_attention_masks",
]
