"""Semantic video tokenizer: Theia features → TiTok I/P-frame encoder → VQ codes → TiTok decoder."""

from landiff_jax.tokenizer.api import decode, encode
from landiff_jax.tokenizer.config import TheiaConfig, TokenizerConfig, TokenizerTrainConfig
from landiff_jax.tokenizer.convert import convert_tokenizer, load_tokenizer, tokenizer_rules
from landiff_jax.tokenizer.masks import decoder_mask, encoder_mask
from landiff_jax.tokenizer.model import VideoVQ

__all__ = [
    "TheiaConfig",
    "TokenizerConfig",
    "TokenizerTrainConfig",
    "VideoVQ",
    "convert_tokenizer",
    "decode",
    "decoder_mask",
    "encode",
    "encoder_mask",
    "load_tokenizer",
    "tokenizer_rules",
]
