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


def affine_params(module: nn.Module, d: int, axis_name: str, param_dtype, use_scale: bool = True,
                  use_bias: bool = True):
    """A norm's (scale [d] = 1, bias [d] = 0) params, each None where unused, created in
    `module` (call inside its compact method)."""
    part = lambda init: nn.with_logical_partitioning(init, (axis_name,))  # noqa: E731
    scale = module.param("scale", part(nn.initializers.ones_init()), (d,), param_dtype) if use_scale else None
    bias = module.param("bias", part(nn.initializers.zeros_init()), (d,), param_dtype) if use_bias else None
    return scale, bias


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
        scale, bias = affine_params(self, x.shape[-1], self.axis_name, self.param_dtype, self.use_scale, self.use_bias)
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        if scale is not None:
            y = y * scale.astype(jnp.float32)
        if bias is not None:
            y = y + bias.astype(jnp.float32)
        return y.astype(self.dtype)
