"""Encoder and decoder of the CogVideoX 3D causal VAE (ContextParallelEncoder3D / Decoder3D with
one context-parallel rank). Submodule names follow the original's state-dict paths
(`down.1.block.0` -> `down_1_block_0`)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.nn.group_norm import GroupNorm
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.layers import CausalConv3d, DownSample3D, ResnetBlock3D, SpatialNorm3D, Upsample3D


class Encoder(nn.Module):
    """video [b f H W c_in] in [-1, 1] -> moments [b t h w 2z] (mean, then unclamped logvar).

    GroupNorm statistics span every frame of the call; time is halved at the first
    log2(temporal_compress_times) levels, space at every level but the last."""

    cfg: VAEConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        h = CausalConv3d(cfg, cfg.ch, name="conv_in")(x.astype(cfg.dtype))[0]
        for i, mult in enumerate(cfg.ch_mult):
            for j in range(cfg.num_res_blocks):
                h = ResnetBlock3D(cfg, cfg.ch * mult, name=f"down_{i}_block_{j}")(h)[0]
            if i != cfg.num_levels - 1:
                h = DownSample3D(cfg, compress_time=i < cfg.time_levels, name=f"down_{i}_downsample")(h)
        width = h.shape[-1]
        h = ResnetBlock3D(cfg, width, name="mid_block_1")(h)[0]
        h = ResnetBlock3D(cfg, width, name="mid_block_2")(h)[0]
        h = GroupNorm(cfg.num_groups, cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name="norm_out")(h)
        return CausalConv3d(cfg, 2 * cfg.z_channels, name="conv_out")(nn.silu(h))[0].astype(jnp.float32)


class Decoder(nn.Module):
    """z [b t h w z] (decoder space: latent / scale_factor) -> video [b f H W out_ch], unclamped.

    `cache`: None (every causal conv pads with copies of frame 0), or the cache returned by the
    previous call on the preceding latent chunk. Returns (video, new cache); a caller that
    would pass clear_fake_cp_cache=True to the original simply drops the new cache.
    Every norm is conditioned on z; its statistics span the frames of this call only."""

    cfg: VAEConfig

    @nn.compact
    def __call__(self, z, cache=None):
        cfg = self.cfg
        cache = cache or {}
        new_cache = {}

        def block(h, features, name):
            h, new_cache[name] = ResnetBlock3D(cfg, features, name=name)(h, zq, cache.get(name))
            return h

        zq = z.astype(cfg.dtype)
        width = cfg.ch * cfg.ch_mult[-1]
        h, new_cache["conv_in"] = CausalConv3d(cfg, width, name="conv_in")(zq, cache.get("conv_in"))
        h = block(h, width, "mid_block_1")
        h = block(h, width, "mid_block_2")
        for i in reversed(range(cfg.num_levels)):
            for j in range(cfg.num_res_blocks + 1):
                h = block(h, cfg.ch * cfg.ch_mult[i], f"up_{i}_block_{j}")
            if i != 0:
                compress_time = i >= cfg.num_levels - cfg.time_levels
                h = Upsample3D(cfg, compress_time=compress_time, name=f"up_{i}_upsample")(h)
        h = nn.silu(SpatialNorm3D(cfg, name="norm_out")(h, zq))
        h, new_cache["conv_out"] = CausalConv3d(cfg, cfg.out_ch, name="conv_out")(h, cache.get("conv_out"))
        return h.astype(jnp.float32), new_cache


def init_params(cfg: VAEConfig, key: jax.Array) -> dict:
    """Random parameters {'encoder': ..., 'decoder': ...} (boxed with logical axis names)."""
    k_enc, k_dec = jax.random.split(key)
    video, latent = example_inputs(cfg)
    return {
        "encoder": Encoder(cfg).init(k_enc, video)["params"],
        "decoder": Decoder(cfg).init(k_dec, latent)["params"],
    }


def example_inputs(cfg: VAEConfig) -> tuple[jax.Array, jax.Array]:
    """The smallest video / latent the modules accept (parameter shapes do not depend on them)."""
    s = cfg.spatial_factor
    return jnp.zeros((1, 1, s, s, cfg.in_channels)), jnp.zeros((1, 1, 1, 1, cfg.z_channels))


def abstract_params(cfg: VAEConfig, *, decode_only: bool = False) -> dict:
    """Shapes/dtypes (and logical names) of init_params' result, without computing anything;
    `decode_only`: just {'decoder': ...} (what generation reads)."""
    tree = jax.eval_shape(functools.partial(init_params, cfg), jax.random.key(0))
    return {"decoder": tree["decoder"]} if decode_only else tree

