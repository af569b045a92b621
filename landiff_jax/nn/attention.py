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

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def attention_implementation(dtype, backend: str | None = None) -> str:
    """'cudnn' for half precision on GPU, 'xla' otherwise."""
    backend = backend or jax.default_backend()
    if backend == "gpu" and jnp.dtype(dtype) in [jnp.dtype(d) for d in _CUDNN_DTYPES]:
        return "cudnn"
    return "xla"


MOSAIC_Q_BLOCK, MOSAIC_KV_BLOCK = 128, 128  # the Mosaic GPU kernel's tiles (fastest at the DiT's shape)


def padded_attention(q, k, v, scale: float, kernel, q_multiple: int = 2 * MOSAIC_Q_BLOCK,
                     kv_multiple: int = MOSAIC_KV_BLOCK):
    """Attention through a kernel that needs query / key lengths in multiples of q_multiple /
    kv_multiple, has no key mask, takes pre-scaled float16 inputs and returns (out, log2 of each
    row's softmax sum [b h s]). Queries are padded and dropped; padded keys are zero, so each
    scores exactly 0 and adds exp(0) = 1 per padded key to the row's softmax sum Z = 2^lse, and
    nothing to the weighted values: out · Z / (Z − pads) removes them exactly."""
    def pad_to(a, multiple):
        return jnp.pad(a, ((0, 0), (0, -a.shape[1] % multiple), (0, 0), (0, 0))).astype(jnp.float16)

    out, lse = kernel(pad_to(q * scale, q_multiple), pad_to(k, kv_multiple), pad_to(v, kv_multiple))
    s, pads = q.shape[1], -k.shape[1] % kv_multiple
    out = out[:, :s].astype(jnp.float32)
    if pads:
        kept = 1.0 - pads * jnp.exp2(-jnp.swapaxes(lse, 1, 2)[:, :s])  # [b s h]: the real keys' share of Z
        out = out / kept[..., None]
    return out.astype(q.dtype)


def _mosaic_kernel(q, k, v):
    """The Pallas Mosaic GPU (Hopper, warp-specialised) flash attention of jax's kernel library."""
    from jax.experimental.pallas.ops.gpu import attention_mgpu

    device = jax.devices()[0]
    if device.platform != "gpu" or not str(getattr(device, "compute_capability", "")).startswith("9."):
        raise ValueError(f"the 'mosaic' attention needs a Hopper GPU (H100/H200), not {device.device_kind}")
    if q.shape[-1] % 64:
        raise ValueError(f"the 'mosaic' attention needs a head dim that is a multiple of 64, got {q.shape[-1]}")

    config = attention_mgpu.TuningConfig(block_q=MOSAIC_Q_BLOCK, block_kv=MOSAIC_KV_BLOCK, max_concurrent_steps=2)
    out, (lse,) = attention_mgpu.attention(q, k, v, config, save_residuals=True)
    return out, lse


def dot_product_attention(q, k, v, *, mask=None, bias=None, scale=None, implementation=None):
    """softmax(q·kᵀ·scale + bias + mask) v.

    q: [b s h d], k and v: [b t h d] (k/v may have fewer heads for grouped attention).
    mask: boolean, broadcastable to [b h s t], True where a query may attend a key.
    bias: optional additive float logits bias, 4-D, broadcastable to [b h s t] (e.g. T5's
    relative position bias); added after scaling, before the mask.
    scale: defaults to 1/sqrt(d).
    implementation: None picks `attention_implementation(q.dtype)`; 'cudnn' raises on
    unsupported inputs instead of silently falling back. 'mosaic' (opt-in; Hopper GPUs, no mask
    or bias, head dim a multiple of 64) runs jax's Mosaic GPU flash attention in float16 via
    `padded_attention`: faster than cuDNN at the DiT's shape, with float16 rounding of q/k/v/out
    where cuDNN rounds to bfloat16.
    """
    impl = implementation or attention_implementation(q.dtype)
    if impl == "mosaic":
        if mask is not None or bias is not None:
            raise ValueError("the 'mosaic' attention takes no mask or bias")
        return padded_attention(q, k, v, scale or 1.0 / math.sqrt(q.shape[-1]), _mosaic_kernel)
    if mask is not None:
        mask = jnp.asarray(mask, dtype=bool)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale, implementation=impl)


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
