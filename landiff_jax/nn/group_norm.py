"""GroupNorm for channels-last tensors, statistics in float32."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def group_stats(x, num_groups: int, eps: float):
    """Per sample and channel: (mean, 1/sqrt(var + eps)) of the channel's group, float32,
    shaped [b 1 … 1 c] to broadcast against x [b … c].

    The statistics span every axis but the batch within a group of c/num_groups channels
    (torch.nn.GroupNorm on the channels-first tensor). Two-pass variance.
    """
    b, c = x.shape[0], x.shape[-1]
    if c % num_groups:
        raise ValueError(f"group_stats: {c} channels do not split into {num_groups} groups")
    g = x.astype(jnp.float32).reshape(b, -1, num_groups, c // num_groups)
    mean = jnp.mean(g, axis=(1, 3), keepdims=True)
    var = jnp.mean(jnp.square(g - mean), axis=(1, 3), keepdims=True)
    inv = jax.lax.rsqrt(var + eps)

    def per_channel(s):  # [b 1 g 1] -> [b 1 … 1 c]
        return jnp.repeat(s.reshape(b, num_groups), c // num_groups, axis=-1).reshape(b, *(1,) * (x.ndim - 2), c)

    return per_channel(mean), per_channel(inv)


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
        part = lambda init: nn.with_logical_partitioning(init, (self.axis_name,))  # noqa: E731
        scale = self.param("scale", part(nn.initializers.ones_init()), (c,), self.param_dtype)
        bias = self.param("bias", part(nn.initializers.zeros_init()), (c,), self.param_dtype)
        mean, inv = group_stats(x, self.num_groups, self.eps)
        a = inv * scale.astype(jnp.float32)
        return (x.astype(jnp.float32) * a + (bias.astype(jnp.float32) - mean * a)).astype(self.dtype)
