"""Theia feature extractor: the DeiT/ViT-B/16 backbone applied to uint8 frames.

Frames are scaled to [−1, 1] by (x − 127.5)/127.5, the learned 14×14 position table is resized
bicubically (PyTorch's kernel, a = −0.75, align_corners=False, no antialiasing) to the frame's
patch grid, the CLS token is dropped after the final LayerNorm, and the feature grid is fitted to
the configured output grid (zero-pad bottom/right, then crop). Theia's translator heads are not
used at inference.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from landiff_jax.nn import LayerNorm, scan_layers
from landiff_jax.tokenizer.blocks import PatchEmbed, TransformerBlock
from landiff_jax.tokenizer.config import TheiaConfig

_CUBIC_A = -0.75  # PyTorch's bicubic coefficient (PIL/antialiased kernels use −0.5)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution weights of the 4 taps at offsets −1, 0, 1, 2 for fractions t."""
    a = _CUBIC_A

    def near(x):  # |x| ≤ 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] matrix of PyTorch's bicubic resize along one axis (align_corners=False; taps
    beyond the border read the border value)."""
    dst = np.arange(out_size, dtype=np.float64)
    src = (dst + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(src)
    weights = _cubic_weights(src - base)
    m = np.zeros((out_size, in_size), np.float64)
    for tap in range(4):
        idx = np.clip(base.astype(np.int64) - 1 + tap, 0, in_size - 1)
        np.add.at(m, (np.arange(out_size), idx), weights[:, tap])
    return m.astype(np.float32)


def resize_position_table(table, grid: tuple[int, int]):
    """Patch position table [g0, g0, d] → [gh, gw, d] by separable bicubic interpolation."""
    g0 = table.shape[0]
    if (g0, g0) == tuple(grid):
        return table
    rows, cols = bicubic_matrix(g0, grid[0]), bicubic_matrix(g0, grid[1])
    return jnp.einsum("hi,wj,ijd->hwd", rows, cols, table.astype(jnp.float32), precision="highest")


def fit_to_grid(features, output_shape: tuple[int, int]):
    """[..., gh, gw, c] → [..., oh, ow, c]: zero-pad bottom/right where smaller, then crop.

    The original's crop and pad-then-crop branches both reduce to this for square grids (the
    only ones it accepts); non-square grids (e.g. 480×720 frames → 30×45) follow the same rule.
    """
    oh, ow = output_shape
    gh, gw = features.shape[-3:-1]
    pad = [(0, 0)] * (features.ndim - 3) + [(0, max(oh - gh, 0)), (0, max(ow - gw, 0)), (0, 0)]
    return jnp.pad(features, pad)[..., :oh, :ow, :]


class TheiaBackbone(nn.Module):
    """uint8 frames [n H W 3] → (ViT last hidden state without CLS [n gh gw d], aux)."""

    config: TheiaConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, frames):
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        n, height, width = frames.shape[:3]
        grid = (height // cfg.patch_size, width // cfg.patch_size)
        if frames.shape[3] != 3 or min(grid) < 1:
            raise ValueError(f"frames must be [n, H, W, 3] with H, W ≥ {cfg.patch_size}, got {frames.shape}")
        pixels = (frames.astype(jnp.float32) - 127.5) / 127.5

        init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed",))
        cls_token = self.param("cls_token", init, (cfg.hidden_size,), self.param_dtype)
        table_init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("length", "embed"))
        table = self.param("position_embeddings", table_init, (1 + cfg.table_grid**2, cfg.hidden_size),
                           self.param_dtype)
        patch_pos = resize_position_table(table[1:].reshape(cfg.table_grid, cfg.table_grid, -1), grid)
        pos = jnp.concatenate([table[:1].astype(jnp.float32), patch_pos.reshape(-1, cfg.hidden_size)])

        patches = PatchEmbed(cfg.hidden_size, cfg.patch_size, name="patch_embed", **kw)(pixels.astype(self.dtype))
        x = jnp.concatenate(
            [jnp.broadcast_to(cls_token.astype(self.dtype), (n, 1, cfg.hidden_size)), patches.reshape(n, -1, cfg.hidden_size)],
            axis=1,
        )
        x = (x + pos).astype(self.dtype)
        aux = {"pixel_values": pixels, "pos_embed": pos, "embeddings": x}
        layers = scan_layers(
            TransformerBlock, cfg.num_layers, in_axes=(), name="layers",
            num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim, attn_bias=True, ln_eps=cfg.layer_norm_eps, attention=cfg.attention,
            **kw,
        )
        x, _ = layers(x)
        x = LayerNorm(cfg.layer_norm_eps, name="layernorm", **kw)(x)
        aux["last_hidden_state"] = x
        return x[:, 1:].reshape(n, *grid, cfg.hidden_size), aux


def extract_features(backbone: TheiaBackbone, video):
    """uint8 video [b t H W 3] → Theia features fitted to the output grid [b t oh ow d], and aux."""
    if video.ndim != 5 or video.dtype != jnp.uint8:
        raise ValueError(f"video must be uint8 [b, t, H, W, 3], got {video.dtype} {video.shape}")
    b, t = video.shape[:2]
    features, aux = backbone(video.reshape(b * t, *video.shape[2:]))
    features = fit_to_grid(features, backbone.config.output_shape)
    return features.reshape(b, t, *features.shape[1:]), aux
