"""Sinusoidal embeddings of scalars (timesteps, micro-conditions)."""

from __future__ import annotations

import math

import jax.numpy as jnp


def timestep_embedding(t, dim: int, max_period: float = 10000.0):
    """[cos | sin] of t·exp(−ln(max_period)·i/half), i < half = dim//2; zero-padded if dim is odd.

    t: [...] (any float/int) → [..., dim] float32. This is the order both the DiT's
    `timestep_embedding` and the LM's micro-conditioner use (cos first).
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[..., None] * freqs
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[..., :1])], axis=-1)
    return emb
