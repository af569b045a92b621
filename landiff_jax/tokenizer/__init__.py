"""Semantic video tokenizer: Theia features → TiTok I/P-frame encoder → VQ codes → TiTok decoder.

The package's face (the same in text, tokenizer, lm, diffusion, vae): the config class with
presets, `abstract_params(cfg, ...)`, `convert_params(state_dict, cfg, ...) -> (params, report)`, and one
jitted entry point per job (`encode`, `decode`).
"""

from landiff_jax.tokenizer.api import abstract_params, decode, encode
from landiff_jax.tokenizer.config import TheiaConfig, TokenizerConfig, TokenizerTrainConfig
from landiff_jax.tokenizer.convert import convert_params, load_tokenizer, tokenizer_rules
from landiff_jax.tokenizer.masks import decoder_mask, encoder_mask
from landiff_jax.tokenizer.model import VideoVQ

__all__ = [
    "TheiaConfig",
    "TokenizerConfig",
    "TokenizerTrainConfig",
    "VideoVQ",
    "abstract_params",
    "convert_params",
    "decode",
    "decoder_mask",
    "encode",
    "encoder_mask",
    "load_tokenizer",
    "tokenizer_rules",
]
