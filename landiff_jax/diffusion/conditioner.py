"""SemanticCond: semantic tokens → tokenizer decoder features → pixel-shuffle upsampler
(vq_gan_blocks.Decoder, ×2 to the latent grid) → conv 3×3 to the latent channels.

Computed once per generation (outside the step loop); the result [1, t, H, W, c] is broadcast
over the guidance batch by the DiT.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.diffusion.config import DiTConfig, SemanticCondConfig
from landiff_jax.nn.group_norm import GroupNorm
from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.tokenizer.model import VideoVQ


def _conv(features: int, kernel: int, name: str, dtype, param_dtype) -> nn.Conv:
    return nn.Conv(
        features, (kernel, kernel), padding=kernel // 2, name=name, dtype=dtype, param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), (None, None, "conv_in", "conv_out")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("conv_out",)),
    )


def _group_norm(name: str, cfg: SemanticCondConfig, dtype, param_dtype) -> GroupNorm:
    """GroupNorm(32 groups, eps 1e-6) over (h, w, channels-in-group) of each frame."""
    return GroupNorm(cfg.num_groups, cfg.norm_eps, dtype=dtype, param_dtype=param_dtype, name=name)


def pixel_shuffle(x, r: int = 2):
    """torch PixelShuffle in channels-last: [n h w (c r r)] → [n (h r) (w r) c]."""
    n, h, w, crr = x.shape
    c = crr // (r * r)
    x = x.reshape(n, h, w, c, r, r).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * r, w * r, c)


class ResnetBlock(nn.Module):
    """x + conv2(silu(norm2(conv1(silu(norm1(x)))))), 1×1 `nin_shortcut` when channels change."""

    cfg: SemanticCondConfig
    out_channels: int
    dtype: object = jnp.float32
    param_dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x):  # [n h w c]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = _conv(self.out_channels, 3, "conv1", **kw)(nn.silu(_group_norm("norm1", self.cfg, **kw)(x)))
        h = _conv(self.out_channels, 3, "conv2", **kw)(nn.silu(_group_norm("norm2", self.cfg, **kw)(h)))
        if x.shape[-1] != self.out_channels:
            x = _conv(self.out_channels, 1, "nin_shortcut", **kw)(x)
        return x + h


class Upsampler(nn.Module):
    """vq_gan_blocks.Decoder without attention, pixel-shuffle upsampling: conv_in, two middle
    blocks, then levels from the deepest: (num_res_blocks+1) blocks, and for every level but
    0 PixelShuffle(2) followed by a 3×3 conv (c/4 → c); then GroupNorm, SiLU, conv_out."""

    cfg: SemanticCondConfig
    dtype: object = jnp.float32
    param_dtype: object = jnp.float32

    @nn.compact
    def __call__(self, z):  # [n h w z_channels] → [n (h·2^(levels-1)) (w·…) out_dim]
        c = self.cfg
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        levels = len(c.ch_mult)
        channels = c.level_channels(levels - 1)
        h = _conv(channels, 3, "conv_in", **kw)(z)
        h = ResnetBlock(c, channels, name="mid_block_1", **kw)(h)
        h = ResnetBlock(c, channels, name="mid_block_2", **kw)(h)
        for level in reversed(range(levels)):
            channels = c.level_channels(level)
            for j in range(c.num_res_blocks + 1):
                h = ResnetBlock(c, channels, name=f"up_{level}_block_{j}", **kw)(h)
            if level:
                h = _conv(channels, 3, f"up_{level}_upsample", **kw)(pixel_shuffle(h))
        return _conv(c.out_dim, 3, "conv_out", **kw)(nn.silu(_group_norm("norm_out", c, **kw)(h)))


class SemanticCond(nn.Module):
    """Tokenizer features [b t h w z] → semantic feature [b t H W target_dim] (and, with
    `return_upsampled`, the upsampler output [b t H W out_dim] too)."""

    cfg: SemanticCondConfig
    dtype: object = jnp.float32
    param_dtype: object = jnp.float32

    @nn.compact
    def __call__(self, features, return_upsampled: bool = False):
        c = self.cfg
        if features.ndim != 5 or features.shape[-1] != c.z_channels:
            raise ValueError(f"tokenizer features must be [b, t, h, w, {c.z_channels}], got {features.shape}")
        b, t = features.shape[:2]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        up = Upsampler(c, name="upsample_model", **kw)(features.reshape(b * t, *features.shape[2:]).astype(self.dtype))
        out = _conv(c.target_dim, 3, "conv_out", **kw)(up)
        out = out.reshape(b, t, *out.shape[1:])
        if return_upsampled:
            return out, up.reshape(b, t, *up.shape[1:])
        return out


@functools.partial(jax.jit, static_argnames=("cfg", "tokenizer_cfg", "num_frames", "collect"))
def semantic_feature(params, cfg: DiTConfig, tokenizer_cfg: TokenizerConfig, codes, num_frames: int | None = None,
                     collect: bool = False):
    """Semantic tokens [b N] → semantic feature [b t H W c] (once per generation).

    params: the converted tree's {'semantic', 'tokenizer'} entries. num_frames defaults to the
    tokenizer's temporal_size, as the original decodes (forward_T=None). With `collect`, also
    {'tokenizer_features': [b t h w z], 'upsampled_features': [b t H W out_dim]}.
    """
    features = VideoVQ(tokenizer_cfg).apply({"params": params["tokenizer"]}, codes, num_frames,
                                            method=VideoVQ.decode_codes)
    feature, upsampled = SemanticCond(cfg.semantic, cfg.dtype, cfg.param_dtype).apply(
        {"params": params["semantic"]}, features, return_upsampled=True)
    if not collect:
        return feature
    return feature, {"tokenizer_features": features, "upsampled_features": upsampled}
