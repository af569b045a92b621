"""The diffusion stage's face: `abstract_params`; the jitted entry points are
`conditioner.semantic_feature` (once per generation) and `sampler.sample` (the guided loop)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from landiff_jax.diffusion.conditioner import SemanticCond
from landiff_jax.diffusion.config import DiTConfig
from landiff_jax.diffusion.dit import ControlDiT
from landiff_jax.tokenizer import TokenizerConfig
from landiff_jax.tokenizer import abstract_params as tokenizer_abstract_params


def abstract_params(cfg: DiTConfig, tokenizer_cfg: TokenizerConfig, *, decode_only: bool = False):
    """jax.eval_shape of every parameter (boxed with logical names); uses no memory.
    {'dit', 'semantic', 'tokenizer'}; with `decode_only`, the tokenizer copy holds just what
    decoding codes uses (generation), not its encoder."""
    h, w = cfg.latent_height, cfg.latent_width
    x = jax.ShapeDtypeStruct((1, 1, h, w, cfg.in_channels), jnp.float32)
    ctx = jax.ShapeDtypeStruct((1, cfg.text_length, cfg.text_hidden_size), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    feats = jax.ShapeDtypeStruct((1, 1, h // 2, w // 2, cfg.semantic.z_channels), jnp.float32)
    key = jax.random.key(0)
    return {
        "dit": jax.eval_shape(ControlDiT(cfg).init, key, x, t, ctx, x)["params"],
        "semantic": jax.eval_shape(SemanticCond(cfg.semantic, cfg.dtype, cfg.param_dtype).init, key, feats)["params"],
        "tokenizer": tokenizer_abstract_params(tokenizer_cfg, decode_only=decode_only),
    }
