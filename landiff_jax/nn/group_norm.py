"""GroupNorm for channels-last tensors, statistics in float32."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.nn.norms import affine_params


def group_stats(x, num_groups: int, eps: float):
    """Per sample and channel: (mean, 1/sqrt(var + eps)) of the channel's group, float32,
    shaped [b 1 … 1 c] to broadcast against x [b … c].

    The statistics span every axis but the batch within a group of c/num_groups channels
    (torch.nn.GroupNorm on the channels-first tensor). Two-pass variance.
    """
    b, c = x.shape[0], x.shape[-1]
    if c % num_groups:
        raise ValueError(f"group_stats: {c} channels do not split into {num_groups} groups")
    x32 = x.astype(jnp.float32).reshape(b, -1, c)
    count = x32.shape[1] * (c // num_groups)

    def group_mean(per_channel_sum):  # [b c] -> [b 1 c]: the mean over the channel's group
        g = per_channel_sum.reshape(b, num_groups, c // num_groups).sum(-1, keepdims=True) / count
        return jnp.broadcast_to(g, (b, num_groups, c // num_groups)).reshape(b, 1, c)

    # per-channel sums over every position first (a reduction over the leading axis with the
    # channels contiguous), then over the channels of each group on the small [b c] result
    mean = group_mean(jnp.sum(x32, axis=1))
    var = group_mean(jnp.sum(jnp.square(x32 - mean), axis=1))
    inv = jax.lax.rsqrt(var + eps)
    shape = (b, *(1,) * (x.ndim - 2), c)
    return mean.reshape(shape), inv.reshape(shape)


def group_normalize(x, num_groups: int, eps: float):
    """(x - mean) / sqrt(var + eps) per sample and channel group, in float32."""
    mean, inv = group_stats(x, num_groups, eps)
    return x.astype(jnp.float32) * inv - mean * inv


class GroupNorm(nn.Module):
    """torch.nn.GroupNorm(num_groups, c, eps, affine=True) on channels-last input; params
    `scale`/`bias` [c] on logical axis `axis_name`. Returns `dtype` (float32 by default).

    Computed as x·a + b with per-channel a, b: one elementwise pass over x after the
    statistics, which fuses into whatever consumes the result."""

    num_groups: int = 32
    eps: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    axis_name: str = "conv_out"

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale, bias = affine_params(self, c, self.axis_name, self.param_dtype)
        mean, inv = group_stats(x, self.num_groups, self.eps)
        a = inv * scale.astype(jnp.float32)
        return (x.astype(jnp.float32) * a + (bias.astype(jnp.float32) - mean * a)).astype(self.dtype)
