"""The pre-LayerNorm transformer block shared by the TiTok encoder/decoder and Theia's ViT,
and the patch embedding both use."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from landiff_jax.nn import LayerNorm, Mlp, apply_rope, dense, dot_product_attention
from landiff_jax.nn.mlp import gelu_erf
from landiff_jax.tokenizer.masks import FrameMask, frame_attention


def patchify(x, patch: int):
    """[..., H, W, C] → [..., H/p, W/p, p·p·C] (row-major (i, j, c) inside a patch); like a
    stride-p convolution without padding, trailing rows/columns that do not fill a patch are dropped."""
    *lead, h, w, c = x.shape
    gh, gw = h // patch, w // patch
    x = x[..., : gh * patch, : gw * patch, :]
    x = x.reshape(*lead, gh, patch, gw, patch, c)
    x = jnp.moveaxis(x, -4, -3)  # [..., gh, gw, p, p, c]
    return x.reshape(*lead, gh, gw, patch * patch * c)


class PatchEmbed(nn.Module):
    """A stride-`patch` convolution as a dense layer over patch vectors (`patchify`)."""

    features: int
    patch: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        proj = dense(self.features, ("conv_in", "embed"), name="proj", dtype=self.dtype, param_dtype=self.param_dtype)
        return proj(patchify(x, self.patch))


class TransformerBlock(nn.Module):
    """x + attn(ln_1(x)); then + mlp(ln_2(x)) with an exact-erf GELU MLP of ratio `mlp_dim/width`.

    Attention: separate q/k/v/o projections, optional interleaved RoPE on q and k after the head
    split, optional frame-group mask (`masks.FrameMask`), softmax(q·kᵀ/√d). Returns (x, x or None) for `nn.scan`:
    the per-layer output is kept only when `collect` is set (parity traces).
    """

    num_heads: int
    mlp_dim: int
    attn_bias: bool = False
    ln_eps: float = 1e-5
    collect: bool = False
    attention: str = "xla"  # nn.attention.ATTENTION (the config's, chosen by `runtime`)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, angles=None, mask: FrameMask | None = None):
        # x: [b s d]; angles: [s d_head/2]
        b, s, d = x.shape
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = LayerNorm(self.ln_eps, name="ln_1", **kw)(x)

        def heads(name, axes=("embed", "heads")):
            y = dense(d, axes, use_bias=self.attn_bias, name=name, **kw)(h)
            return y.reshape(b, s, self.num_heads, d // self.num_heads)

        q, k, v = heads("wq"), heads("wk"), heads("wv")
        if angles is not None:
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        out = (dot_product_attention(q, k, v, implementation=self.attention) if mask is None
               else frame_attention(q, k, v, mask, self.attention)).reshape(b, s, d)
        x = x + dense(d, ("heads", "embed"), use_bias=self.attn_bias, name="wo", **kw)(out)
        h = LayerNorm(self.ln_eps, name="ln_2", **kw)(x)
        x = x + Mlp(self.mlp_dim, act=gelu_erf, name="mlp", **kw)(h)
        return x, (x if self.collect else None)
