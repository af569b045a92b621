"""Attention of one new query per row over a preallocated KV cache, reading only the filled slots.

A decode step of the LM attends slots [start, length) of a cache allocated for the whole
sequence. XLA's attention reads every slot of the cache (masked ones included), so its cost
grows with the allocation, not with the position. `pallas_decode_attention` is a split-K
("flash decoding") Pallas kernel: each program owns one (row, head) and one span of slots,
loops over the blocks of its span that hold valid slots, and keeps an online softmax in
float32; the spans' partial results are merged outside the kernel. Programs whose span is
empty read nothing.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

BLOCK = 64  # slots per loaded block; the cache length must be a multiple of it
SPAN = 2 * BLOCK  # slots per program
_EMPTY = -1e30  # running max of a span with no valid slot (finite: exp(_EMPTY - m) is 0, never NaN)


def _span_kernel(start_ref, length_ref, q_ref, k_ref, v_ref, o_ref, m_ref, l_ref, *, scale: float):
    # q [d]; k, v [T d] of one (row, head); outputs: this span's unnormalised o [d], max m, sum l
    first = pl.program_id(0) * SPAN
    lo = jnp.maximum(first, start_ref[()])
    hi = jnp.minimum(first + SPAN, length_ref[()])
    q = q_ref[...].astype(jnp.float32) * scale

    def block(i, carry):
        acc, m, l = carry
        at = first + i * BLOCK
        slots = at + jnp.arange(BLOCK)
        k = k_ref[pl.ds(at, BLOCK), :].astype(jnp.float32)
        s = jnp.where((slots >= lo) & (slots < hi), jnp.sum(k * q[None, :], axis=1), -jnp.inf)  # [BLOCK]
        m_new = jnp.maximum(m, jnp.max(s))
        p = jnp.exp(s - m_new)
        alpha = jnp.exp(m - m_new)
        v = v_ref[pl.ds(at, BLOCK), :].astype(jnp.float32)
        return acc * alpha + jnp.sum(p[:, None] * v, axis=0), m_new, l * alpha + jnp.sum(p)

    blocks = jnp.maximum(pl.cdiv(hi - first, BLOCK), 0)
    init = (jnp.zeros(q.shape, jnp.float32), jnp.float32(_EMPTY), jnp.float32(0))
    acc, m, l = jax.lax.fori_loop(0, blocks, block, init)
    o_ref[...] = acc
    m_ref[...] = m
    l_ref[...] = l


def _one_row_head(q, k, v, start, length, *, scale: float, interpret: bool):
    """q [d], k/v [T d], start/length [] -> per span (o [n d], m [n], l [n]), n = cdiv(T, SPAN)."""
    slots, d = k.shape
    spans = pl.cdiv(slots, SPAN)
    scalar = pl.BlockSpec((), lambda j: ())
    whole = pl.BlockSpec((slots, d), lambda j: (0, 0))
    return pl.pallas_call(
        functools.partial(_span_kernel, scale=scale),
        grid=(spans,),
        in_specs=[scalar, scalar, pl.BlockSpec((d,), lambda j: (0,)), whole, whole],
        out_specs=[pl.BlockSpec((None, d), lambda j: (j, 0)), pl.BlockSpec((None,), lambda j: (j,)),
                   pl.BlockSpec((None,), lambda j: (j,))],
        out_shape=[jax.ShapeDtypeStruct((spans, d), jnp.float32), jax.ShapeDtypeStruct((spans,), jnp.float32),
                   jax.ShapeDtypeStruct((spans,), jnp.float32)],
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
    w = jnp.exp(m - jnp.max(m, axis=1, keepdims=True))  # [bh n]: each span's share of the softmax
    out = jnp.sum(o * w[..., None], axis=1) / jnp.sum(l * w, axis=1)[:, None]
    return out.reshape(b, h, d).astype(q.dtype)
