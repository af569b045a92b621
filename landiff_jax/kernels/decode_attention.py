"""Attention of one new query per row over a preallocated KV cache, reading only the filled slots.

A decode step of the LM attends slots [start, length) of a cache allocated for the whole
sequence. XLA's attention reads every slot of the cache (masked ones included), so its cost
grows with the allocation, not with the position. `pallas_decode_attention` is a split-K
("flash decoding") Pallas kernel: each program owns one (row, head) and one block of slots
and computes that block's softmax partials in float32 (max, sum, weighted values); the
partials are merged outside the kernel. Programs whose block holds no valid slot read
nothing.

What it is: FORWARD ONLY (decoding needs no gradient); any head dim; the cache length must be a
multiple of BLOCK (`lm.model` allocates it so; anything else is refused with ValueError). The
grid is one axis over slot blocks per (row, head), vmapped over rows and heads, so every
program's K/V block is contiguous in the [b h T d] cache. Run on GPU, or with `interpret=True`
anywhere (Pallas interpreter: slow, for tests); `runtime` picks it for half precision on GPU
where the LM runs per device (one device, or a mesh with its weights replicated: the sampler
calls it inside `shard_map`), and XLA where the LM's weights are sharded (a Pallas call is not
SPMD-partitioned).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

BLOCK = 64  # slots per program; the cache length must be a multiple of it
_EMPTY = -1e30  # running max of a block with no valid slot (finite: exp(_EMPTY - m) is 0, never NaN)


def _block_kernel(start_ref, length_ref, q_ref, k_ref, v_ref, o_ref, m_ref, l_ref, *, scale: float):
    # q [d]; k, v [BLOCK d]: one block of one (row, head); outputs: the block's unnormalised o [d], max m, sum l
    first = pl.program_id(0) * BLOCK
    lo, hi = start_ref[()], length_ref[()]
    o_ref[...] = jnp.zeros(o_ref.shape, jnp.float32)
    m_ref[...] = jnp.float32(_EMPTY)
    l_ref[...] = jnp.float32(0)

    @pl.when((first < hi) & (first + BLOCK > lo))  # blocks without a valid slot are not read
    def _():
        slots = first + jnp.arange(BLOCK)
        q = q_ref[...].astype(jnp.float32) * scale
        k, v = k_ref[...].astype(jnp.float32), v_ref[...].astype(jnp.float32)
        s = jnp.where((slots >= lo) & (slots < hi), jnp.sum(k * q[None, :], axis=1), -jnp.inf)  # [BLOCK]
        m = jnp.max(s)
        p = jnp.exp(s - m)
        o_ref[...] = jnp.sum(p[:, None] * v, axis=0)
        m_ref[...] = m
        l_ref[...] = jnp.sum(p)


def _one_row_head(q, k, v, start, length, *, scale: float, interpret: bool):
    """q [d], k/v [T d], start/length [] -> per block (o [n d], m [n], l [n]), n = T / BLOCK."""
    slots, d = k.shape
    blocks = slots // BLOCK
    scalar = pl.BlockSpec((), lambda j: ())
    block = pl.BlockSpec((BLOCK, d), lambda j: (j, 0))
    return pl.pallas_call(
        functools.partial(_block_kernel, scale=scale),
        grid=(blocks,),
        in_specs=[scalar, scalar, pl.BlockSpec((d,), lambda j: (0,)), block, block],
        out_specs=[pl.BlockSpec((None, d), lambda j: (j, 0)), pl.BlockSpec((None,), lambda j: (j,)),
                   pl.BlockSpec((None,), lambda j: (j,))],
        out_shape=[jax.ShapeDtypeStruct((blocks, d), jnp.float32), jax.ShapeDtypeStruct((blocks,), jnp.float32),
                   jax.ShapeDtypeStruct((blocks,), jnp.float32)],
        interpret=interpret,
        name="decode_attention",
    )(start, length, q, k, v)


def pallas_decode_attention(q, cache_k, cache_v, start, length, *, scale: float, interpret: bool = False):
    """q [b h d]; cache_k/v [b h T d] (T a multiple of BLOCK); start [b], length [] or [b]:
    row r attends slots start[r] <= t < length[r]. Returns [b h d] in q's dtype."""
    b, h, slots, d = cache_k.shape
    if slots % BLOCK:
        raise ValueError(f"cache length {slots} must be a multiple of {BLOCK} for the decode kernel")
    per_head = lambda a: jnp.repeat(jnp.broadcast_to(jnp.asarray(a, jnp.int32), (b,)), h)
    run = jax.vmap(functools.partial(_one_row_head, scale=scale, interpret=interpret))
    o, m, l = run(q.reshape(b * h, d), cache_k.reshape(b * h, slots, d), cache_v.reshape(b * h, slots, d),
                  per_head(start), per_head(length))
    w = jnp.exp(m - jnp.max(m, axis=1, keepdims=True))  # [bh n]: each block's share of the softmax
    out = jnp.sum(o * w[..., None], axis=1) / jnp.sum(l * w, axis=1)[:, None]
    return out.reshape(b, h, d).astype(q.dtype)
