"""Attention on TPU: jax's Pallas TPU flash attention
(`jax.experimental.pallas.ops.tpu.flash_attention`, forward and backward kernels), behind our
[b s h d] layout and for any sequence length. `runtime` picks it ('tpu_flash') for bf16/fp16 on
one TPU; the dispatcher (`nn.attention`) sends it only unmasked, unbiased (optionally causal)
attention, the rest to XLA.

Any length: q and k/v are padded to a multiple of the kernel's 128-row blocks; padded keys get
segment id 1 and every query segment id 0, so no query sees them (and no query row is left
without a key); padded query rows are dropped. Block sizes are jax's defaults (128 everywhere),
not tuned on a TPU. Head dims up to 128, or multiples of 128 (the kernel's limit).

Off TPU the kernel runs in the Pallas TPU interpreter (`pltpu.force_tpu_interpret_mode()`),
which is how the tests check it on CPU.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

BLOCK = 128  # the kernel's minimum (and default) block: sequences are padded to a multiple


def supports_head_dim(head_dim: int) -> bool:
    return head_dim <= 128 or head_dim % 128 == 0


def tpu_flash_attention(q, k, v, *, scale: float | None = None, is_causal: bool = False):
    """softmax(q·kᵀ·scale) v (causal: query i attends keys j <= i) for q [b s h d], k/v [b t h' d]
    with h' dividing h; returns [b s h d] in q's dtype."""
    try:
        from jax.experimental.pallas.ops.tpu import flash_attention as fa
    except ImportError as e:  # an install without Pallas TPU support
        raise RuntimeError(f"the 'tpu_flash' attention needs jax's Pallas TPU ops ({e}); use 'xla'") from e
    b, s, h, d = q.shape
    t, kv_heads = k.shape[1], k.shape[2]
    if k.shape != (b, t, kv_heads, d) or v.shape != k.shape or h % kv_heads:
        raise ValueError(f"k and v must be [{b}, t, h', {d}] with h' dividing {h}, got {k.shape} and {v.shape}")
    if not supports_head_dim(d):
        raise ValueError(f"the TPU flash attention takes head dims <= 128 or multiples of 128, got {d}")
    if s == 0 or t == 0:
        raise ValueError(f"empty sequence: q {q.shape}, k {k.shape}")
    if kv_heads != h:
        k, v = (jnp.repeat(x, h // kv_heads, axis=2) for x in (k, v))
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    sp, tp = (-(-n // BLOCK) * BLOCK for n in (s, t))
    # [b s h d] -> [b h s d], padded along s
    heads_first = lambda x, n: jnp.pad(jnp.swapaxes(x, 1, 2), ((0, 0), (0, 0), (0, n - x.shape[1]), (0, 0)))  # noqa: E731
    segments = None
    if tp != t:
        kv_ids = jnp.broadcast_to((jnp.arange(tp) >= t).astype(jnp.int32), (b, tp))
        segments = fa.SegmentIds(q=jnp.zeros((b, sp), jnp.int32), kv=kv_ids)
    blocks = fa.BlockSizes(block_q=BLOCK, block_k_major=BLOCK, block_k=BLOCK, block_b=1,
                           block_q_major_dkv=BLOCK, block_k_major_dkv=BLOCK, block_k_dkv=BLOCK, block_q_dkv=BLOCK,
                           block_k_major_dq=BLOCK, block_k_dq=BLOCK, block_q_dq=BLOCK)
    out = fa.flash_attention(heads_first(q, sp), heads_first(k, tp), heads_first(v, tp), segment_ids=segments,
                             causal=is_causal, sm_scale=scale, block_sizes=blocks)
    return jnp.swapaxes(out[:, :, :s], 1, 2).astype(q.dtype)
