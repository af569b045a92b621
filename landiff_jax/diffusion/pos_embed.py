"""The DiT's fixed 3D sincos position embedding (CogVideoX `get_3d_sincos_pos_embed`).

The table is separable: a token (t, h, w) gets [temporal(t) | spatial-w(w) | spatial-h(h)], each
1-D part [sin | cos] of pos·ω with ω_i = 10000^(−i/(D/2)) in float64, positions first rounded to
float32 (arange / interpolation in float32, as the original does), the result cast to float32.
Only the three small 1-D tables are built on the host; the full [t·h·w, D] table is a broadcast
in the graph. Text tokens get no position embedding (their rows of the original's table are zero).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[n] positions → [n, dim] float32 = [sin | cos] of positions·ω (computed in float64)."""
    if dim % 2:
        raise ValueError(f"sincos embedding needs an even dim, got {dim}")
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.asarray(positions, np.float32).astype(np.float64)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def _grid(n: int, interpolation: float) -> np.ndarray:
    return np.arange(n, dtype=np.float32) / np.float32(interpolation)


def sincos_3d_tables(dim: int, frames: int, height: int, width: int,
                     t_interp: float = 1.0, h_interp: float = 1.0, w_interp: float = 1.0):
    """(temporal [frames, dim/4], spatial_w [width, 3dim/8], spatial_h [height, 3dim/8])."""
    if dim % 4 or (dim // 4 * 3) % 4:
        raise ValueError(f"3D sincos embedding needs dim divisible by 4 with 3·dim/4 divisible by 4, got {dim}")
    spatial = dim // 4 * 3
    return (
        sincos_1d(dim // 4, _grid(frames, t_interp)),
        sincos_1d(spatial // 2, _grid(width, w_interp)),  # meshgrid(w, h): the first half encodes w
        sincos_1d(spatial // 2, _grid(height, h_interp)),
    )


def video_pos_embed(cfg, frames: int):
    """[frames·h·w, hidden] float32 position embedding of the video tokens (t, h, w row-major)."""
    h, w = cfg.grid
    temporal, spatial_w, spatial_h = (
        jnp.asarray(t) for t in sincos_3d_tables(
            cfg.hidden_size, frames, h, w, cfg.time_interpolation, cfg.height_interpolation, cfg.width_interpolation)
    )
    shape = (frames, h, w)
    table = jnp.concatenate(
        [
            jnp.broadcast_to(temporal[:, None, None, :], shape + temporal.shape[-1:]),
            jnp.broadcast_to(spatial_w[None, None, :, :], shape + spatial_w.shape[-1:]),
            jnp.broadcast_to(spatial_h[None, :, None, :], shape + spatial_h.shape[-1:]),
        ],
        axis=-1,
    )
    return table.reshape(frames * h * w, cfg.hidden_size)


def full_pos_embedding(cfg) -> np.ndarray:
    """The original's stored `pos_embedding` [1, text_length + T·h·w, hidden] (text rows zero), for
    checking a checkpoint's copy."""
    video = np.asarray(video_pos_embed(cfg, cfg.latent_frames))
    return np.concatenate([np.zeros((cfg.text_length, cfg.hidden_size), np.float32), video])[None]
