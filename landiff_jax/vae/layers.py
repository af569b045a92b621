"""Building blocks of the CogVideoX 3D causal VAE, channels-last (`b t h w c`).

Causal temporal convolutions take an explicit cache (the last `kt-1` frames of the previous
chunk's temporally padded input) and return the new one; nothing is stored in the module.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

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
        y = conv(self.cfg, self.features, (self.kernel,) * 3, padding=((0, 0), (pad_s, pad_s), (pad_s, pad_s)),
                 name="conv")(x)
        return y, new_cache


def nearest_resize(x, size: tuple[int, int, int]):
    """torch `interpolate(mode='nearest')` of x [b t h w c] to (t, h, w) for whole-number
    enlargement factors (the only ones a VAE with power-of-two resampling produces)."""
    for axis, n in zip((1, 2, 3), size):
        m = x.shape[axis]
        if n % m:
            raise ValueError(f"nearest_resize: size {m} -> {n} on axis {axis} is not a whole-number enlargement")
        if n != m:
            x = jnp.repeat(x, n // m, axis=axis)
    return x


def resize_latent_to(zq, shape: tuple[int, ...]):
    """The decoder's latent zq [b t h w c] resized to a feature map's (t, h, w), as SpatialNorm3D
    does: for odd t > 1, latent frame 0 covers only feature frame 0 and the rest are resized
    onto feature frames 1..; otherwise the whole latent is resized."""
    t, h, w = shape[1:4]
    if t > 1 and t % 2 == 1:
        first = nearest_resize(zq[:, :1], (1, h, w))
        rest = nearest_resize(zq[:, 1:], (t - 1, h, w))
        return jnp.concatenate([first, rest], axis=1)
    return nearest_resize(zq, (t, h, w))


class SpatialNorm3D(nn.Module):
    """GroupNorm(f) · conv_y(zq') + conv_b(zq'), zq' = the latent nearest-resized to f.

    conv_y/conv_b are 1×1×1, so they are applied at the latent resolution and their outputs
    resized (the same numbers, computed once per latent pixel)."""

    cfg: VAEConfig

    @nn.compact
    def __call__(self, f, zq):
        cfg = self.cfg
        c = f.shape[-1]
        norm = GroupNorm(cfg.num_groups, cfg.norm_eps, dtype=jnp.float32, param_dtype=cfg.param_dtype,
                         name="norm_layer")(f)
        y = CausalConv3d(cfg, c, kernel=1, name="conv_y")(zq)[0]
        b = CausalConv3d(cfg, c, kernel=1, name="conv_b")(zq)[0]
        y, b = resize_latent_to(y, f.shape), resize_latent_to(b, f.shape)
        return (norm * y.astype(jnp.float32) + b.astype(jnp.float32)).astype(cfg.dtype)


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
            x = conv(cfg, self.features, (1, 1, 1), name="nin_shortcut")(x)
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
        return conv(self.cfg, x.shape[-1], (3, 3), strides=2, padding=((0, 1), (0, 1)), name="conv")(x)


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
        x = conv(self.cfg, x.shape[-1], (3, 3), padding=((1, 1), (1, 1)), name="conv")(x)
        if self.compress_time and t > 1:
            x = (jnp.concatenate([x[:, :1], jnp.repeat(x[:, 1:], 2, axis=1)], axis=1) if t % 2
                 else jnp.repeat(x, 2, axis=1))
        return x

