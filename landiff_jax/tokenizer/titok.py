"""TiTok video encoder and decoder with I-frame / P-frame latent queries.

Sequence of a clip of T frames: [visual tokens (t, h, w raster), latent tokens], the latent
tokens being I learned I-frame queries then, for each frame after the first, P learned P-frame
queries. Both attend under the frame-group masks and 3D RoPE of `masks.py`.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from landiff_jax.nn import LayerNorm, Mlp, dense, scan_layers
from landiff_jax.tokenizer import masks
from landiff_jax.tokenizer.blocks import PatchEmbed, TransformerBlock
from landiff_jax.tokenizer.config import TokenizerConfig


def _learned(module: nn.Module, name: str, shape, scale: float):
    init = nn.with_logical_partitioning(nn.initializers.normal(scale), ("length", "embed")[-len(shape):])
    return module.param(name, init, shape, module.config.param_dtype)


class _Trunk(nn.Module):
    """ln_pre → scanned transformer blocks under (angles, mask). Returns (x, aux)."""

    config: TokenizerConfig
    collect: bool = False

    @nn.compact
    def __call__(self, x, angles, mask):
        cfg = self.config
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        x = LayerNorm(cfg.ln_eps, name="ln_pre", **kw)(x)
        aux = {"ln_pre": x}
        layers = scan_layers(
            TransformerBlock, cfg.num_layers, in_axes=(nn.broadcast, nn.broadcast), name="layers", remat=cfg.remat,
            num_heads=cfg.num_heads, mlp_dim=4 * cfg.width, attn_bias=cfg.attn_bias, ln_eps=cfg.ln_eps,
            collect=self.collect, attention=cfg.attention, **kw,
        )
        x, per_layer = layers(x, angles, mask)
        if self.collect:
            aux["layers"] = per_layer
        return x, aux


class TiTokEncoder(nn.Module):
    """features [b t h w c] → continuous latent tokens [b N token_size], N = I + (T−1)·P."""

    config: TokenizerConfig
    collect: bool = False

    @nn.compact
    def __call__(self, features):
        cfg = self.config
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        b, num_frames = features.shape[:2]
        if features.shape[2:] != (*cfg.image_size, cfg.image_channels):
            raise ValueError(
                f"features {features.shape} do not match [b, t, {cfg.image_size[0]}, {cfg.image_size[1]}, "
                f"{cfg.image_channels}] of the tokenizer config"
            )
        scale = cfg.width**-0.5
        queries = [_learned(self, "iframe_queries", (cfg.iframe_tokens, cfg.width), scale)]
        if cfg.temporal_size > 1:
            pframe = _learned(self, "pframe_queries", (cfg.pframe_tokens, cfg.width), scale)
            queries += [pframe] * (num_frames - 1)
        elif num_frames > 1:
            raise ValueError("a tokenizer with temporal_size 1 has no P-frame queries; encode one frame")
        latent = jnp.concatenate(queries, axis=0).astype(cfg.dtype)

        visual = PatchEmbed(cfg.width, cfg.patch_size, name="patch_embed", **kw)(features.astype(cfg.dtype))
        visual = visual.reshape(b, -1, cfg.width)  # b (t h w) d
        x = jnp.concatenate([visual, jnp.broadcast_to(latent, (b, *latent.shape))], axis=1)
        x, aux = _Trunk(cfg, self.collect, name="trunk")(
            x, masks.rope_angles(cfg, num_frames), masks.encoder_frames(cfg, num_frames)
        )
        latent = LayerNorm(cfg.ln_eps, name="ln_post", **kw)(x[:, visual.shape[1]:])
        return dense(cfg.token_size, ("embed", None), name="proj_out", **kw)(latent), aux


class TiTokDecoder(nn.Module):
    """latent tokens [b N token_size] → features [b t h w output_channels] of a T-frame clip."""

    config: TokenizerConfig
    collect: bool = False

    @nn.compact
    def __call__(self, latent, num_frames: int):
        cfg = self.config
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        b, n = latent.shape[:2]
        if n != cfg.num_codes(num_frames):
            raise ValueError(f"{n} latent tokens given, a {num_frames}-frame clip has {cfg.num_codes(num_frames)}")
        gh, gw = cfg.grid
        num_visual = num_frames * gh * gw
        latent = dense(cfg.width, (None, "embed"), name="decoder_embed", **kw)(latent.astype(cfg.dtype))
        mask_token = _learned(self, "mask_token", (cfg.width,), cfg.width**-0.5).astype(cfg.dtype)
        x = jnp.concatenate([jnp.broadcast_to(mask_token, (b, num_visual, cfg.width)), latent], axis=1)
        x, aux = _Trunk(cfg, self.collect, name="trunk")(
            x, masks.rope_angles(cfg, num_frames), masks.decoder_frames(cfg, num_frames)
        )
        aux["embed"] = latent
        visual = LayerNorm(cfg.ln_eps, name="ln_post", **kw)(x[:, :num_visual])
        out = Mlp(2 * cfg.width, cfg.output_channels, act=jnp.tanh, name="ffn", **kw)(visual)
        return out.reshape(b, num_frames, gh, gw, cfg.output_channels), aux
