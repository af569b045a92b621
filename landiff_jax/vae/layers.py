"""Building blocks of the CogVideoX 3D causal VAE, channels-last (`b t h w c`).

Causal temporal convolutions take an explicit cache (the last `kt-1` frames of the previous
chunk's temporally padded input) and return the new one; nothing is stored in the module.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from landiff_jax.nn.group_norm import GroupNorm
from landiff_jax.vae.config import VAEConfig

CONV_AXES_3D = (None, None, None, "conv_in", "conv_out")
CONV_AXES_2D = (None, None, "conv_in", "conv_out")


def conv(cfg: VAEConfig, features: int, kernel: tuple[int, ...], *, name: str, strides=1, padding="VALID") -> nn.Conv:
    """A Conv (2D or 3D by len(kernel)) with logical axis names and the config's dtypes/precision.

    2D convs applied to `b t h w c` treat `b t` as batch dimensions (per-frame Conv2d)."""
    axes = CONV_AXES_3D if len(kernel) == 3 else CONV_AXES_2D
    return nn.Conv(
        features,
        kernel,
        strides=strides,
        padding=padding,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        precision=cfg.conv_precision,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("conv_out",)),
        name=name,
    )


MAX_CONV_ELEMENTS = 2**30  # per conv call, input or output (see `in_time_chunks`)


def in_time_chunks(apply, x, window: int, out_channels: int):
    """apply(x [b t h w c]) → [b t−window+1 h' w' o] for a convolution whose output frame i reads
    input frames [i, i + window) only, run on overlapping time slices when one call would hold
    more than MAX_CONV_ELEMENTS elements in its input or output (the same result: every output
    frame sees the same inputs). A 49-frame 480×720 clip at 128 channels has 2.2e9 elements per
    activation: past the 32-bit element indexing of GPU convolution kernels (cuDNN: < 2^31), and
    each such call costs ~15 TFLOP, every time autotuning tries an algorithm on it."""
    b, t, *space, c = x.shape
    per_frame = b * math.prod(space) * max(c, out_channels)
    frames = t - window + 1
    step = max(1, MAX_CONV_ELEMENTS // per_frame - (window - 1))
    if step >= frames:
        return apply(x)
    return jnp.concatenate([apply(x[:, i:min(i + step, frames) + window - 1]) for i in range(0, frames, step)], axis=1)


class CausalConv3d(nn.Module):
    """Conv3d (3×3×3, stride 1) padded causally in time and with zeros in space.

    The time padding is `cache` ([b kt-1 h w c]) when given, else copies of frame 0. Returns
    (y [b t h w o], new cache = the last kt-1 frames of the time-padded input; None for kt=1).
    """

    cfg: VAEConfig
    features: int
    kernel: int = 3

    @nn.compact
    def __call__(self, x, cache=None):
        pad_t, pad_s = self.kernel - 1, self.kernel // 2
        new_cache = None
        if pad_t:
            front = jnp.repeat(x[:, :1], pad_t, axis=1) if cache is None else cache.astype(x.dtype)
            x = jnp.concatenate([front, x], axis=1)
            new_cache = x[:, x.shape[1] - pad_t:]
        layer = conv(self.cfg, self.features, (self.kernel,) * 3, padding=((0, 0), (pad_s, pad_s), (pad_s, pad_s)),
                     name="conv")
        return in_time_chunks(layer, x, self.kernel, self.features), new_cache


def enlargement(small: int, large: int) -> int:
    """The whole-number factor of a nearest enlargement (power-of-two resampling only makes those)."""
    if large % small:
        raise ValueError(f"nearest resize {small} -> {large} is not a whole-number enlargement")
    return large // small


def latent_frame_index(latent_frames: int, frames: int) -> np.ndarray:
    """Which latent frame torch's nearest resize puts at each of `frames` feature frames, with
    SpatialNorm3D's rule: for odd frames > 1, latent frame 0 covers only feature frame 0 and
    the rest are resized onto frames 1..; otherwise the whole latent is resized."""
    if frames > 1 and frames % 2:
        return np.concatenate([[0], 1 + np.arange(frames - 1) // enlargement(latent_frames - 1, frames - 1)])
    return np.arange(frames) // enlargement(latent_frames, frames)


class SpatialNorm3D(nn.Module):
    """GroupNorm(f) · conv_y(zq') + conv_b(zq'), zq' = the latent nearest-resized to f.

    conv_y/conv_b are 1×1×1, so they are applied at the latent resolution; their outputs are
    picked per feature frame and broadcast over each latent pixel's rh×rw block of f, so no
    full-resolution copy of them is ever made (the same numbers as resizing first)."""

    cfg: VAEConfig

    @nn.compact
    def __call__(self, f, zq):
        # f [b t H W c], zq [b tz h w cz]
        cfg = self.cfg
        b, t, H, W, c = f.shape
        h, w = zq.shape[2:4]
        rh, rw = enlargement(h, H), enlargement(w, W)
        frames = latent_frame_index(zq.shape[1], t)
        norm = GroupNorm(cfg.num_groups, cfg.norm_eps, dtype=jnp.float32, param_dtype=cfg.param_dtype,
                         name="norm_layer")(f)

        def modulation(name):  # [b t h 1 w 1 c]
            m = CausalConv3d(cfg, c, kernel=1, name=name)(zq)[0]
            return jnp.take(m, frames, axis=1).astype(jnp.float32)[:, :, :, None, :, None, :]

        y = norm.reshape(b, t, h, rh, w, rw, c) * modulation("conv_y") + modulation("conv_b")
        return y.reshape(f.shape).astype(cfg.dtype)


class ResnetBlock3D(nn.Module):
    """h = conv1(silu(norm1(x))); h = conv2(silu(norm2(h))); out = shortcut(x) + h.

    With `zq` (decoder) the norms are SpatialNorm3D, else GroupNorm over all frames (encoder).
    `cache` is (conv1, conv2) caches or None; returns (out, new caches)."""

    cfg: VAEConfig
    features: int

    @nn.compact
    def __call__(self, x, zq=None, cache=None):
        cfg = self.cfg
        cache = cache or (None, None)

        def norm(h, name):
            if zq is None:
                return GroupNorm(cfg.num_groups, cfg.norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                 name=name)(h)
            return SpatialNorm3D(cfg, name=name)(h, zq)

        h, c1 = CausalConv3d(cfg, self.features, name="conv1")(nn.silu(norm(x, "norm1")), cache[0])
        h, c2 = CausalConv3d(cfg, self.features, name="conv2")(nn.silu(norm(h, "norm2")), cache[1])
        if x.shape[-1] != self.features:
            x = in_time_chunks(conv(cfg, self.features, (1, 1, 1), name="nin_shortcut"), x, 1, self.features)
        return x + h, (c1, c2)


def average_frame_pairs(x):
    """x [b t h w c] -> mean of consecutive frame pairs [b t/2 h w c] (t even)."""
    b, t = x.shape[:2]
    return jnp.mean(x.reshape(b, t // 2, 2, *x.shape[2:]), axis=2, dtype=jnp.float32).astype(x.dtype)


class DownSample3D(nn.Module):
    """Optional time halving (odd t keeps frame 0 and averages the following pairs; even t
    averages every pair), then a per-frame 3×3 stride-2 conv after padding right/bottom by 1."""

    cfg: VAEConfig
    compress_time: bool

    @nn.compact
    def __call__(self, x):
        t = x.shape[1]
        if self.compress_time and t > 1:
            x = (jnp.concatenate([x[:, :1], average_frame_pairs(x[:, 1:])], axis=1) if t % 2
                 else average_frame_pairs(x))
        layer = conv(self.cfg, x.shape[-1], (3, 3), strides=2, padding=((0, 1), (0, 1)), name="conv")
        return in_time_chunks(layer, x, 1, x.shape[-1])


class Upsample3D(nn.Module):
    """Nearest ×2 in space (and in time: odd t keeps frame 0 single and doubles the rest, even t
    doubles every frame), then a per-frame 3×3 conv. Frame doubling commutes with the per-frame
    conv, so it is done after it (half the conv work)."""

    cfg: VAEConfig
    compress_time: bool

    @nn.compact
    def __call__(self, x):
        t = x.shape[1]
        x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
        x = in_time_chunks(conv(self.cfg, x.shape[-1], (3, 3), padding=((1, 1), (1, 1)), name="conv"), x, 1,
                           x.shape[-1])
        if self.compress_time and t > 1:
            x = (jnp.concatenate([x[:, :1], jnp.repeat(x[:, 1:], 2, axis=1)], axis=1) if t % 2
                 else jnp.repeat(x, 2, axis=1))
        return x

