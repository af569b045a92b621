"""The attention dispatchers: every model calls `dot_product_attention`, and a cached decode
step `decode_attention`, with the implementation its config carries.

Nothing here looks at devices: `landiff_jax.runtime` picks the implementations once (from the
devices, the mesh and the dtype) and writes them into the configs. The default, 'xla', runs
anywhere and is what float32 parity runs use: XLA's reference attention while the score matrix
is small (at most PLAIN_MAX_SCORES entries), else the memory-efficient blockwise attention
(`nn.blockwise_attention`), so that no backend needs a fused kernel to fit a long sequence.
`sequence_parallel_attention` is unmasked attention inside `shard_map` over sequences split
across devices (the DiT on a mesh).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from landiff_jax.kernels import hopper_attention, pallas_decode_attention, tpu_flash_attention, tpu_supports_head_dim
from landiff_jax.nn.blockwise_attention import blockwise_attention
from landiff_jax.parallel import SequenceSplit

# 'mosaic': our Hopper kernel (unmasked, per device); 'tpu_flash': jax's Pallas TPU flash attention
# (unmasked, unbiased, per device); 'blockwise': the memory-efficient XLA attention at any size
ATTENTION = ("xla", "blockwise", "cudnn", "mosaic", "tpu_flash")
DECODE_ATTENTION = ("xla", "pallas", "pallas_interpret")  # 'pallas_interpret': the kernel off GPU (tests)
# the largest score matrix (b·h·s·t entries) that 'xla' materialises: 2^27 float32 = 512 MiB
PLAIN_MAX_SCORES = 1 << 27


def dot_product_attention(q, k, v, *, mask=None, bias=None, scale=None, is_causal=False, implementation=None):
    """softmax(q·kᵀ·scale + bias + mask) v.

    q: [b s h d], k and v: [b t h d] (k/v may have fewer heads for grouped attention).
    mask: boolean, broadcastable to [b h s t], True where a query may attend a key.
    bias: optional additive float logits bias, 4-D, broadcastable to [b h s t] (e.g. T5's
    relative position bias); added after scaling, before the mask.
    scale: defaults to 1/sqrt(d).
    is_causal: query i attends keys j <= i only (cuDNN then skips the masked half, with no
    mask tensor).
    implementation: one of ATTENTION (None: 'xla'). 'xla': XLA's reference attention, or above
    PLAIN_MAX_SCORES score entries the blockwise one. 'blockwise': always the blockwise one.
    'cudnn' raises on unsupported inputs instead of silently falling back. 'mosaic' (Hopper GPUs,
    bf16/fp16, no mask or bias, head dim 64, per device: on a mesh inside `shard_map`) runs
    `kernels.hopper_attention`: faster than cuDNN's at the DiT's shape, same rounding.
    'tpu_flash' runs `kernels.tpu_flash_attention` where it applies (no mask or bias; causal
    allowed; head dim <= 128 or a multiple of 128), else 'xla'.
    """
    impl = implementation or "xla"
    if impl not in ATTENTION:
        raise ValueError(f"attention implementation must be one of {ATTENTION}, got {impl!r}")
    if impl == "mosaic":
        if mask is not None or bias is not None or is_causal:
            raise ValueError("the 'mosaic' attention takes no mask, bias or causality")
        return hopper_attention(q, k.astype(q.dtype), v.astype(q.dtype), scale=scale)
    if impl == "tpu_flash":
        if mask is None and bias is None and tpu_supports_head_dim(q.shape[-1]):
            return tpu_flash_attention(q, k.astype(q.dtype), v.astype(q.dtype), scale=scale, is_causal=is_causal)
        impl = "xla"
    if mask is not None:
        mask = jnp.asarray(mask, dtype=bool)
    b, s, h, _ = q.shape
    if impl == "blockwise" or (impl == "xla" and b * h * s * k.shape[1] > PLAIN_MAX_SCORES):
        return blockwise_attention(q, k, v, mask=mask, bias=bias, scale=scale, is_causal=is_causal)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale, is_causal=is_causal,
                                        implementation=impl)


def sequence_parallel_attention(q, k, v, split: SequenceSplit, *, scale=None, implementation=None):
    """Unmasked attention over whole sequences of which this device holds the chunks q, k, v
    [b chunk h d] (inside `shard_map`; see `parallel.SequenceSplit`) -> this chunk's output.

    Ulysses-style: an all-to-all turns the chunks of every head into whole sequences of h/size
    heads, the attention runs per device on those (any implementation, our kernels included),
    and a second all-to-all turns the output back. Where `size` does not divide h (30 heads on
    4 or 8 devices), zero heads pad h to the next multiple (their output is dropped): at 30 -> 32
    heads that is 7 % more attention work, against moving whole keys and values around a ring.
    """
    heads = q.shape[2]
    q, k, v = (split.heads_to_devices(x) for x in (q, k, v))
    out = dot_product_attention(q, k, v, scale=scale, implementation=implementation)
    return split.heads_to_chunks(out, heads)


def decode_attention(q, cache_k, cache_v, start, length, *, implementation=None):
    """One query per row over a KV cache: softmax(q·kᵀ/√d) v over slots start[r] <= t < length.

    q: [b h d]; cache_k, cache_v: [b h T d]; start: [b]; length: scalar or [b].
    implementation: one of DECODE_ATTENTION (None: 'xla', a masked softmax over every slot);
    'pallas' reads only the valid slots (GPU); 'pallas_interpret' runs that kernel in the Pallas
    interpreter (any backend; slow; for tests).
    """
    impl = implementation or "xla"
    if impl not in DECODE_ATTENTION:
        raise ValueError(f"decode_attention implementation must be one of {DECODE_ATTENTION}, got {impl!r}")
    if impl != "xla":
        return pallas_decode_attention(q, cache_k, cache_v, start, length, scale=1.0 / math.sqrt(q.shape[-1]),
                                       interpret=impl == "pallas_interpret")
    slots = jnp.arange(cache_k.shape[2])
    length = jnp.broadcast_to(length, start.shape)
    mask = (slots[None, :] >= start[:, None]) & (slots[None, :] < length[:, None])  # [b T]
    keys, values = (jnp.swapaxes(c, 1, 2).astype(q.dtype) for c in (cache_k, cache_v))
    out = dot_product_attention(q[:, None], keys, values, mask=mask[:, None, None, :], implementation=impl)
    return out[:, 0]
