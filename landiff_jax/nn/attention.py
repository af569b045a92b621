"""The attention dispatchers: every model calls `dot_product_attention`, and a cached decode
step `decode_attention`.

On GPU with bf16/fp16 inputs they use fused kernels (cuDNN's flash attention; the Pallas
decode kernel of `decode_attention.py`); everywhere else XLA's reference implementation, which
is also what float32 parity runs use.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from landiff_jax.nn.decode_attention import pallas_decode_attention
from landiff_jax.nn.hopper_attention import hopper_attention

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def attention_implementation(dtype, backend: str | None = None) -> str:
    """'cudnn' for half precision on GPU, 'xla' otherwise."""
    backend = backend or jax.default_backend()
    if backend == "gpu" and jnp.dtype(dtype) in [jnp.dtype(d) for d in _CUDNN_DTYPES]:
        return "cudnn"
    return "xla"


def on_hopper_gpu() -> bool:
    """Whether the default device is a Hopper GPU (compute capability 9.x: H100/H200)."""
    device = jax.devices()[0]
    return device.platform == "gpu" and str(getattr(device, "compute_capability", "")).startswith("9.")


def full_attention_implementation(dtype, head_dim: int) -> str:
    """The kernel for unmasked full attention (the DiT's): 'mosaic' (`hopper_attention`) for
    half precision on a Hopper GPU with head dims in multiples of 64, else
    `attention_implementation`'s choice. On an H100 at the DiT's shape it takes 9.1-9.35 ms
    per layer against cuDNN's 11.4-11.8 ms, with the same rounding."""
    impl = attention_implementation(dtype)
    return "mosaic" if impl == "cudnn" and head_dim % 64 == 0 and on_hopper_gpu() else impl


def _mosaic_attention(q, k, v, scale):
    """`hopper_attention` on q/k/v in q's dtype (bf16 or fp16), after checking the device."""
    if not on_hopper_gpu():
        raise ValueError(f"the 'mosaic' attention needs a Hopper GPU (H100/H200), not {jax.devices()[0].device_kind}")
    return hopper_attention(q, k.astype(q.dtype), v.astype(q.dtype), scale=scale)


def dot_product_attention(q, k, v, *, mask=None, bias=None, scale=None, is_causal=False, implementation=None):
    """softmax(q·kᵀ·scale + bias + mask) v.

    q: [b s h d], k and v: [b t h d] (k/v may have fewer heads for grouped attention).
    mask: boolean, broadcastable to [b h s t], True where a query may attend a key.
    bias: optional additive float logits bias, 4-D, broadcastable to [b h s t] (e.g. T5's
    relative position bias); added after scaling, before the mask.
    scale: defaults to 1/sqrt(d).
    is_causal: query i attends keys j <= i only (cuDNN then skips the masked half, with no
    mask tensor).
    implementation: None picks `attention_implementation(q.dtype)`; 'cudnn' raises on
    unsupported inputs instead of silently falling back. 'mosaic' (Hopper GPUs, bf16/fp16, no
    mask or bias, head dim a multiple of 64, one device) runs `hopper_attention`, our Pallas
    Mosaic GPU flash attention: faster than cuDNN's at the DiT's shape, with the same rounding.
    """
    impl = implementation or attention_implementation(q.dtype)
    if impl == "mosaic":
        if mask is not None or bias is not None or is_causal:
            raise ValueError("the 'mosaic' attention takes no mask, bias or causality")
        return _mosaic_attention(q, k, v, scale)
    if mask is not None:
        mask = jnp.asarray(mask, dtype=bool)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale, is_causal=is_causal,
                                        implementation=impl)


def decode_attention(q, cache_k, cache_v, start, length, *, implementation=None):
    """One query per row over a KV cache: softmax(q·kᵀ/√d) v over slots start[r] <= t < length.

    q: [b h d]; cache_k, cache_v: [b h T d]; start: [b]; length: scalar or [b].
    implementation: None picks the Pallas kernel (reads only the valid slots) where
    `attention_implementation` picks cuDNN, else 'xla' (a masked softmax over every slot);
    'pallas' off GPU runs the kernel in the Pallas interpreter (slow; for tests).
    """
    impl = implementation or ("pallas" if attention_implementation(q.dtype) == "cudnn" else "xla")
    if impl not in ("pallas", "xla"):
        raise ValueError(f"decode_attention implementation must be 'pallas' or 'xla', got {impl!r}")
    if impl == "pallas":
        return pallas_decode_attention(q, cache_k, cache_v, start, length, scale=1.0 / math.sqrt(q.shape[-1]),
                                       interpret=jax.default_backend() != "gpu")
    slots = jnp.arange(cache_k.shape[2])
    length = jnp.broadcast_to(length, start.shape)
    mask = (slots[None, :] >= start[:, None]) & (slots[None, :] < length[:, None])  # [b T]
    keys, values = (jnp.swapaxes(c, 1, 2).astype(q.dtype) for c in (cache_k, cache_v))
    out = dot_product_attention(q[:, None], keys, values, mask=mask[:, None, None, :], implementation=impl)
    return out[:, 0]
