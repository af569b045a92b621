"""Rotary position embeddings with interleaved pairs (x[2j], x[2j+1]) as one complex number.

Angles are computed in float32 exactly as the original's complex64 tables are, so the same
positions give the same rotations.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _inv_freqs(dim: int, theta: float) -> np.ndarray:
    """theta^(−2i/dim) for i < dim/2, float32."""
    exponents = np.arange(0, dim, 2, dtype=np.float32)[: dim // 2] / np.float32(dim)
    return (np.float32(1.0) / (np.float32(theta) ** exponents)).astype(np.float32)


def rope_1d_angles(positions, dim: int, theta: float = 10000.0):
    """positions [...] → angles [..., dim/2] (position · inverse frequency), float32."""
    return jnp.asarray(positions, jnp.float32)[..., None] * jnp.asarray(_inv_freqs(dim, theta))


def rope_3d_angles(t, h, w, dim: int, theta: float = 10000.0):
    """3D RoPE (the original's `multiple=16` layout): [t | h | w] along the pair axis.

    dim/8 time frequencies over a dim/4 sub-dimension, and 3·dim/16 frequencies each for height
    and width over a 3·dim/8 sub-dimension. t, h, w: [...] → [..., dim/2].
    """
    if dim % 16:
        raise ValueError(f"3D RoPE needs a head dim divisible by 16, got {dim}")
    t_dim, hw_dim = dim // 4, dim // 8 * 3
    f_t, f_hw = jnp.asarray(_inv_freqs(t_dim, theta)), jnp.asarray(_inv_freqs(hw_dim, theta))
    as_f32 = lambda p: jnp.asarray(p, jnp.float32)[..., None]
    return jnp.concatenate([as_f32(t) * f_t, as_f32(h) * f_hw, as_f32(w) * f_hw], axis=-1)


def apply_rope(x, angles):
    """Rotate interleaved pairs of x [b s h d] by angles [s d/2] or [b s d/2]; computed in float32."""
    if angles.ndim == 2:
        angles = angles[None]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x32 = x.astype(jnp.float32).reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    re, im = x32[..., 0], x32[..., 1]
    out = jnp.stack([re * cos - im * sin, re * sin + im * cos], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)
