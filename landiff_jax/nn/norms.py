"""Normalisations computed in float32 whatever the activation dtype."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps) · scale, statistics in float32 (LLaMA / T5 style)."""

    eps: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones_init(), (self.axis_name,)),
            (x.shape[-1],), self.param_dtype,
        )
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * scale.astype(jnp.float32)).astype(self.dtype)


class LayerNorm(nn.Module):
    """LayerNorm over the last axis with statistics in float32; affine optional."""

    eps: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        if self.use_scale:
            scale = self.param(
                "scale", nn.with_logical_partitioning(nn.initializers.ones_init(), (self.axis_name,)),
                (d,), self.param_dtype,
            )
            y = y * scale.astype(jnp.float32)
        if self.use_bias:
            bias = self.param(
                "bias", nn.with_logical_partitioning(nn.initializers.zeros_init(), (self.axis_name,)),
                (d,), self.param_dtype,
            )
            y = y + bias.astype(jnp.float32)
        return y.astype(self.dtype)
