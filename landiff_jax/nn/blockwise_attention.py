"""Memory-efficient attention in plain XLA, for every backend without a fused kernel: the
queries in chunks of `block_q` rows (`lax.map`), each chunk visiting the keys in blocks of
`block_k` with an online softmax (`lax.scan`; a running max m and sum l per query row), so no
more than one [b h block_q block_k] block of scores exists at a time. Differentiation goes
through a `jax.custom_vjp` that recomputes each block's probabilities from the saved (m, l)
(FlashAttention's backward), so the backward never holds the score matrix either.

It computes what `jax.nn.dot_product_attention(implementation='xla')` computes (logits in
float32 = q·kᵀ·scale + bias, masked entries set to jax's large negative value, so a row with
no allowed key averages all its keys alike; probabilities rounded to v's dtype before P·V), up
to the summation order of the online softmax. Sequences of any length: q is padded to a
multiple of the chunk and k/v to a multiple of the block; padded keys get -inf (never seen),
padded query rows are dropped.

Memory: forward and backward hold O(b·h·block_q·block_k) scores plus the inputs, outputs and
their gradients; the bias gradient (when a bias is given) has the bias's shape.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BLOCK_Q = 512  # query rows per chunk
BLOCK_K = 512  # keys per online-softmax step
MASKED = -0.7 * float(np.finfo(np.float32).max)  # jax's masked-logit value (finite)


def blockwise_attention(q, k, v, *, mask=None, bias=None, scale=None, is_causal=False,
                        block_q: int = BLOCK_Q, block_k: int = BLOCK_K):
    """softmax(q·kᵀ·scale + bias, masked) v without the full score matrix.

    q [b s h d]; k, v [b t h' d] with h' dividing h (grouped heads: query head n reads key head
    n // (h/h')); mask: boolean, bias: float, each broadcastable to [b h s t] (1 to 4 dims);
    is_causal: query i attends keys j <= i (top-left aligned, as jax's). Returns [b s h d] in
    q's dtype.
    """
    b, s, h, d = q.shape
    t, kv_heads = k.shape[1], k.shape[2]
    if k.shape != (b, t, kv_heads, d) or v.shape != k.shape or h % kv_heads:
        raise ValueError(f"k and v must be [{b}, t, h', {d}] with h' dividing {h}, got {k.shape} and {v.shape}")
    if s == 0 or t == 0:
        raise ValueError(f"empty sequence: q {q.shape}, k {k.shape}")
    if block_q < 1 or block_k < 1:
        raise ValueError(f"block sizes must be positive, got {block_q}, {block_k}")
    if kv_heads != h:
        k, v = (jnp.repeat(x, h // kv_heads, axis=2) for x in (k, v))
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    bq, bk = min(block_q, s), min(block_k, t)
    sp, tp = -(-s // bq) * bq, -(-t // bk) * bk
    mask = None if mask is None else _padded(jnp.asarray(mask, bool), (b, h, s, t), sp, tp, "mask")
    bias = None if bias is None else _padded(bias, (b, h, s, t), sp, tp, "bias")
    pad = lambda x, n: jnp.pad(x, ((0, 0), (0, n - x.shape[1]), (0, 0), (0, 0)))  # noqa: E731
    out = _attention(pad(q, sp), pad(k, tp), pad(v, tp), mask, bias, scale, bool(is_causal), t, bq, bk)
    return out[:, :s]


def _padded(x, full, sp: int, tp: int, name: str):
    """x as 4-D [b|1, h|1, s|1, t|1], its query / key axes padded to sp / tp where not 1."""
    if x.ndim > 4:
        raise ValueError(f"{name} has {x.ndim} dims, expected at most 4 (broadcastable to [b h s t] = {full})")
    x = x.reshape((1,) * (4 - x.ndim) + x.shape)
    if any(n not in (1, f) for n, f in zip(x.shape, full)):
        raise ValueError(f"{name} of shape {x.shape} does not broadcast to [b h s t] = {full}")
    widths = [(0, 0), (0, 0), (0, sp - full[2] if x.shape[2] > 1 else 0), (0, tp - full[3] if x.shape[3] > 1 else 0)]
    return jnp.pad(x, widths)


def _block(x, i, j, bq: int, bk: int):
    """Query chunk i, key block j of a 4-D broadcastable array (size-1 axes stay whole)."""
    if x.shape[2] > 1:
        x = lax.dynamic_slice_in_dim(x, i * bq, bq, axis=2)
    if x.shape[3] > 1:
        x = lax.dynamic_slice_in_dim(x, j * bk, bk, axis=3)
    return x


def _logits(qi, kj, mask, bias, i, j, scale, causal, t_valid, bq, bk):
    """Chunk i × block j: (logits [b h bq bk] float32 with disallowed entries at MASKED and
    padded keys at -inf, allowed [b|1 h|1 bq|1 bk] or None)."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", qi, kj, preferred_element_type=jnp.float32) * scale
    if bias is not None:
        logits = logits + _block(bias, i, j, bq, bk).astype(jnp.float32)
    allowed = None if mask is None else _block(mask, i, j, bq, bk)
    if allowed is not None:  # tied to the logits: else, under an outer scan (layers), the mask's
        # broadcast is loop-invariant and gets hoisted for every (i, j) block: [nq nk b h bq bk]
        allowed, logits = lax.optimization_barrier((allowed, logits))
    keys = j * bk + jnp.arange(bk)
    if causal:
        below = (i * bq + jnp.arange(bq))[:, None] >= keys[None, :]
        allowed = below if allowed is None else allowed & below
    if allowed is not None:
        logits = jnp.where(allowed, logits, MASKED)
    if t_valid % bk:  # only the last block holds padded keys
        logits = jnp.where(keys < t_valid, logits, -jnp.inf)
    return logits, allowed


def _stats(q, k, v, mask, bias, scale, causal, t_valid, bq, bk):
    """(out [b s h d] in q's dtype, m, l [b h s] float32): the online softmax per query chunk."""
    b, sp, h, d = q.shape
    nk = k.shape[1] // bk

    def chunk(i):
        qi = lax.dynamic_slice_in_dim(q, i * bq, bq, axis=1)

        def step(carry, j):
            acc, m, l = carry  # acc [b bq h d], m and l [b h bq], float32
            kj, vj = (lax.dynamic_slice_in_dim(x, j * bk, bk, axis=1) for x in (k, v))
            logits, _ = _logits(qi, kj, mask, bias, i, j, scale, causal, t_valid, bq, bk)
            m_new = jnp.maximum(m, logits.max(axis=-1))
            p = jnp.exp(logits - m_new[..., None])
            correction = jnp.exp(m - m_new)
            l = correction * l + p.sum(axis=-1)
            pv = jnp.einsum("bhqk,bkhd->bqhd", p.astype(v.dtype), vj, preferred_element_type=jnp.float32)
            acc = acc * jnp.swapaxes(correction, 1, 2)[..., None] + pv
            return (acc, m_new, l), None

        init = (jnp.zeros((b, bq, h, d), jnp.float32), jnp.full((b, h, bq), -jnp.inf, jnp.float32),
                jnp.zeros((b, h, bq), jnp.float32))
        (acc, m, l), _ = lax.scan(step, init, jnp.arange(nk))
        return (acc / jnp.swapaxes(l, 1, 2)[..., None]).astype(q.dtype), m, l

    out, m, l = lax.map(chunk, jnp.arange(sp // bq))  # [n b bq h d], [n b h bq] twice
    rows = lambda x: jnp.moveaxis(x, 0, 2).reshape(b, h, sp)  # noqa: E731
    return jnp.moveaxis(out, 0, 1).reshape(b, sp, h, d), rows(m), rows(l)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8, 9))
def _attention(q, k, v, mask, bias, scale, causal, t_valid, bq, bk):
    return _stats(q, k, v, mask, bias, scale, causal, t_valid, bq, bk)[0]


def _attention_fwd(q, k, v, mask, bias, scale, causal, t_valid, bq, bk):
    out, m, l = _stats(q, k, v, mask, bias, scale, causal, t_valid, bq, bk)
    return out, (q, k, v, mask, bias, out, m, l)


def _attention_bwd(scale, causal, t_valid, bq, bk, residuals, d_out):
    """Per chunk i and block j: P = exp(logits − m)/l, dV += Pᵀ·dO, dS = P∘(dO·Vᵀ − rowsum(dO∘O))
    (zero where disallowed), dQ += dS·K·scale, dK += dSᵀ·Q·scale, dbias += dS summed to its shape."""
    q, k, v, mask, bias, out, m, l = residuals
    b, sp, h, d = q.shape
    nk = k.shape[1] // bk
    delta = jnp.einsum("bqhd,bqhd->bhq", d_out.astype(jnp.float32), out.astype(jnp.float32))

    def chunk(carry, i):
        dk, dv, dbias = carry
        qi, doi = (lax.dynamic_slice_in_dim(x, i * bq, bq, axis=1) for x in (q, d_out))
        mi, li, deltai = (lax.dynamic_slice_in_dim(x, i * bq, bq, axis=2)[..., None] for x in (m, l, delta))

        def step(carry, j):
            dq, dk, dv, dbias = carry
            kj, vj = (lax.dynamic_slice_in_dim(x, j * bk, bk, axis=1) for x in (k, v))
            logits, allowed = _logits(qi, kj, mask, bias, i, j, scale, causal, t_valid, bq, bk)
            p = jnp.exp(logits - mi) / li  # [b h bq bk]
            dv_j = jnp.einsum("bhqk,bqhd->bkhd", p.astype(d_out.dtype), doi, preferred_element_type=jnp.float32)
            dp = jnp.einsum("bqhd,bkhd->bhqk", doi, vj, preferred_element_type=jnp.float32)
            ds = p * (dp - deltai)
            if allowed is not None:
                ds = jnp.where(allowed, ds, 0.0)
            dq = dq + jnp.einsum("bhqk,bkhd->bqhd", ds, kj, preferred_element_type=jnp.float32) * scale
            dk_j = jnp.einsum("bhqk,bqhd->bkhd", ds, qi, preferred_element_type=jnp.float32) * scale
            dk, dv = (_add_rows(x, j * bk, x_j) for x, x_j in ((dk, dk_j), (dv, dv_j)))
            if dbias is not None:
                dbias = _add_block(dbias, ds, i, j, bq, bk)
            return (dq, dk, dv, dbias), None

        (dq, dk, dv, dbias), _ = lax.scan(step, (jnp.zeros((b, bq, h, d), jnp.float32), dk, dv, dbias),
                                          jnp.arange(nk))
        return (dk, dv, dbias), dq

    zeros = lambda x: None if x is None else jnp.zeros(x.shape, jnp.float32)  # noqa: E731
    (dk, dv, dbias), dq = lax.scan(chunk, (zeros(k), zeros(v), zeros(bias)), jnp.arange(sp // bq))
    dq = jnp.moveaxis(dq, 0, 1).reshape(q.shape)
    dbias = None if bias is None else dbias.astype(bias.dtype)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None, dbias


def _add_rows(x, start, rows):
    """x[:, start:start + len] += rows along axis 1."""
    n = rows.shape[1]
    return lax.dynamic_update_slice_in_dim(x, lax.dynamic_slice_in_dim(x, start, n, axis=1) + rows, start, axis=1)


def _add_block(acc, ds, i, j, bq: int, bk: int):
    """acc (a 4-D broadcastable bias's gradient) += ds [b h bq bk] summed over acc's size-1 axes,
    at chunk i, block j."""
    summed = tuple(a for a in range(4) if acc.shape[a] == 1 and ds.shape[a] > 1)
    ds = ds.sum(axis=summed, keepdims=True) if summed else ds
    starts = (0, 0, i * bq if acc.shape[2] > 1 else 0, j * bk if acc.shape[3] > 1 else 0)
    return lax.dynamic_update_slice(acc, lax.dynamic_slice(acc, starts, ds.shape) + ds, starts)


_attention.defvjp(_attention_fwd, _attention_bwd)
