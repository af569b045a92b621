"""Flash attention for Hopper GPUs (H100/H200) in Pallas Mosaic GPU: the DiT's 'mosaic'
attention (no mask, no bias; any sequence length), chosen by `runtime` for bf16 on Hopper GPUs.

What it is: FORWARD ONLY (no VJP: training differentiates through cuDNN's attention); head dim
64 only (`HEAD_DIMS`: the tiles and register budget were tuned and tested there, the DiT's);
q, k, v all float16 or bfloat16 with the same [b t h d] shape; per device (XLA's SPMD
partitioner does not split a Pallas call: on a mesh the DiT calls it inside `shard_map`). It
refuses (ValueError) any other head dim, dtype mix, shape mismatch or an empty sequence.

Grid order (heads, query tiles, batch), head-major: consecutive CTAs read the same head's K/V,
which then stays in L2 (a query-tile-major order measured 10.4 ms per layer against 9.1-9.35).

One CTA per (head, 3 x block_q query rows, batch) with four warpgroups: three consumers own
one `block_q` query tile each, a producer streams K/V tiles by TMA into a ring of `stages`
shared memory slots. Within a consumer the tensor cores and the softmax overlap: step j issues
the QK GEMM of key tile j and then the PV GEMM of tile j - 1 (asynchronous wgmma), waits for
the QK result only, and computes tile j's softmax while the PV GEMM runs; then it rescales the
output accumulator. (At head dim 64 this beat two consumers taking turns on the tensor cores,
FlashAttention-3's ping-pong, by ≈ 15 %: BUILD_NOTES.) Sequence tails need no padding: TMA
zero-fills rows past the end on loads and drops them on stores, and the last key tile masks
keys past the sequence's end.

Scores are scaled in float32 by scale·log2(e), so p = exp2(s·c − m) with the running max m in
base-2 units; p is rounded to the input dtype for the PV GEMM, as in cuDNN's kernel (same
rounding: on an H100 the two kernels' errors against float32 attention agree to 1e-7).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

LOG2E = math.log2(math.e)
CONSUMERS = 3  # consumer warpgroups per CTA (plus one producer)
HEAD_DIMS = (64,)  # the head dims the tiles were tuned and the kernel tested at
_HALF = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


@dataclasses.dataclass(frozen=True)
class HopperAttentionConfig:
    """Tiles, tuned at head dim 64: larger ones overflow the consumers' 160 registers."""

    block_q: int = 64  # query rows per consumer warpgroup
    block_kv: int = 128  # keys per pipeline step
    stages: int = 3  # K/V shared-memory slots in flight

    def __post_init__(self):
        if self.block_q % 64 or self.block_kv % 64:
            raise ValueError(f"block_q and block_kv must be multiples of 64, got {self.block_q}, {self.block_kv}")
        if self.stages < 2:
            raise ValueError(f"stages must be at least 2, got {self.stages}")


def hopper_attention(q, k, v, *, scale: float | None = None, out_dtype=None,
                     config: HopperAttentionConfig = HopperAttentionConfig()):
    """softmax(q·kᵀ·scale) v for q [b s h d], k/v [b t h d] in float16 or bfloat16 (all alike);
    d in HEAD_DIMS. Returns [b s h d] in out_dtype (default q's dtype)."""
    b, s, h, d = q.shape
    t = k.shape[1]
    if k.shape != (b, t, h, d) or v.shape != k.shape:
        raise ValueError(f"k and v must be [{b}, t, {h}, {d}] like q {q.shape}, got {k.shape}, {v.shape}")
    dtype = jnp.dtype(q.dtype)
    if dtype not in _HALF or k.dtype != dtype or v.dtype != dtype:
        raise ValueError(f"q, k, v must all be float16 or bfloat16, got {q.dtype}, {k.dtype}, {v.dtype}")
    if t == 0 or s == 0:
        raise ValueError(f"empty sequence: q {q.shape}, k {k.shape}")
    if d not in HEAD_DIMS:
        raise ValueError(f"head dim must be one of {HEAD_DIMS} (tuned and tested there only), got {d}")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out_dtype = jnp.dtype(out_dtype or dtype)
    if out_dtype not in _HALF:
        raise ValueError(f"out_dtype must be float16 or bfloat16, got {out_dtype}")
    c = config
    steps = pl.cdiv(t, c.block_kv)
    stages = min(c.stages, steps)
    tail = t % c.block_kv  # keys in the last, partial tile (0: all tiles full)
    log2_scale = scale * LOG2E
    slot = lambda i: lax.rem(i, jnp.int32(stages))  # noqa: E731  (the K/V ring slot of key tile i)

    def consumer(q_ref, out_ref, smem, barriers):
        q_smem, k_smem, v_smem, o_smem = smem
        k_ready, v_ready, q_ready, k_free, v_free = barriers
        wg = lax.axis_index("wg")
        batch, head = lax.axis_index("batch"), lax.axis_index("heads")
        row0 = lax.axis_index("q_tiles") * (CONSUMERS * c.block_q) + wg * c.block_q
        q_tile = q_smem.at[wg]
        plgpu.copy_gmem_to_smem(q_ref.at[batch, pl.ds(row0, c.block_q), head], q_tile, q_ready.at[wg])
        plgpu.barrier_wait(q_ready.at[wg])
        keys = lambda i: plgpu.transpose_ref(k_smem.at[slot(i)], (1, 0))
        tile = (c.block_q, c.block_kv)

        def softmax(scores, m, l, masked):
            if masked:
                key = plgpu.broadcasted_iota(jnp.int32, scores.shape, 1, layout=plgpu.Layout.WGMMA)
                scores = jnp.where(key < tail, scores, -jnp.inf)
            m_new = jnp.maximum(m, scores.max(axis=1) * log2_scale)
            alpha = jnp.exp2(m - m_new)
            p32 = jnp.exp2(scores * log2_scale - lax.broadcast_in_dim(m_new, scores.shape, [0]))
            l *= alpha
            p = p32.astype(dtype)
            l += p32.sum(axis=1)
            return p, m_new, l, alpha

        def run(o_ref):
            o_ref[...] = plgpu.layout_cast(jnp.zeros((c.block_q, d), jnp.float32), plgpu.Layout.WGMMA)
            plgpu.barrier_wait(k_ready.at[0])

            def first(s_ref):
                plgpu.wgmma(s_ref, q_tile, keys(jnp.int32(0)))
                return plgpu.wgmma_accumulator_load(s_ref, wait_n=0)

            scores = pl.run_scoped(first, plgpu.ACC(tile, jnp.float32))
            plgpu.barrier_arrive(k_free.at[0])
            reduced = plgpu.Layout.WGMMA.reduce(1)
            m0 = plgpu.layout_cast(jnp.full((c.block_q,), -jnp.inf, jnp.float32), reduced)
            l0 = plgpu.layout_cast(jnp.zeros((c.block_q,), jnp.float32), reduced)
            p, m, l, _ = softmax(scores, m0, l0, masked=bool(tail) and steps == 1)

            def step(j, carry, masked=False):  # QK of tile j overlaps PV of tile j - 1
                p, m, l = carry
                prev = j - 1
                plgpu.barrier_wait(k_ready.at[slot(j)])
                plgpu.barrier_wait(v_ready.at[slot(prev)])

                def issue(s_ref):
                    plgpu.wgmma(s_ref, q_tile, keys(j))
                    plgpu.wgmma(o_ref, p, v_smem.at[slot(prev)])
                    return plgpu.wgmma_accumulator_load(s_ref, wait_n=1)

                scores = pl.run_scoped(issue, plgpu.ACC(tile, jnp.float32))
                plgpu.barrier_arrive(k_free.at[slot(j)])
                p, m, l, alpha = softmax(scores, m, l, masked)
                o = plgpu.wgmma_accumulator_load(o_ref, wait_n=0)
                plgpu.barrier_arrive(v_free.at[slot(prev)])
                o_ref[...] = o * lax.broadcast_in_dim(alpha, o.shape, [0])
                return p, m, l

            full = steps - 1 if tail else steps
            carry = lax.fori_loop(1, full, step, (p, m, l))
            if tail and steps > 1:
                carry = lax.fori_loop(full, steps, functools.partial(step, masked=True), carry)
            p, _, l = carry
            last = jnp.int32(steps - 1)
            plgpu.barrier_wait(v_ready.at[slot(last)])
            plgpu.wgmma(o_ref, p, v_smem.at[slot(last)])
            o = plgpu.wgmma_accumulator_load(o_ref, wait_n=0)
            plgpu.barrier_arrive(v_free.at[slot(last)])
            return o / lax.broadcast_in_dim(l, o.shape, [0])

        out = pl.run_scoped(run, plgpu.ACC((c.block_q, d), jnp.float32))
        o_tile = o_smem.at[wg]
        o_tile[...] = out.astype(out_dtype)
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(o_tile, out_ref.at[batch, pl.ds(row0, c.block_q), head])
        plgpu.wait_smem_to_gmem(0)

    def producer(k_ref, v_ref, smem, barriers):
        _, k_smem, v_smem, _ = smem
        k_ready, v_ready, _, k_free, v_free = barriers
        batch, head = lax.axis_index("batch"), lax.axis_index("heads")

        def load(i):
            rows, at = (batch, pl.ds(i * c.block_kv, c.block_kv), head), slot(i)
            plgpu.copy_gmem_to_smem(k_ref.at[rows], k_smem.at[at], k_ready.at[at])
            plgpu.copy_gmem_to_smem(v_ref.at[rows], v_smem.at[at], v_ready.at[at])

        pl.loop(0, stages)(load)  # a traced start: the last tile may pass the end

        @pl.loop(stages, steps)
        def _(i):
            plgpu.barrier_wait(k_free.at[slot(i)])
            plgpu.barrier_wait(v_free.at[slot(i)])
            load(i)

    def body(q_ref, k_ref, v_ref, out_ref, *scoped):
        smem, barriers = scoped[:4], scoped[4:]
        wg = lax.axis_index("wg")

        @pl.when(wg < CONSUMERS)
        def _():
            plgpu.set_max_registers(160, action="increase")  # 3 x 128 x 160 + 128 x 24 = 64K registers
            consumer(q_ref, out_ref, smem, barriers)

        @pl.when(wg == CONSUMERS)
        def _():
            plgpu.set_max_registers(24, action="decrease")
            producer(k_ref, v_ref, smem, barriers)

    def entry(q_ref, k_ref, v_ref, out_ref):
        transforms = (plgpu.TilingTransform((8, 64)), plgpu.SwizzleTransform(128))
        tiles = lambda n, rows, dt: plgpu.SMEM((n, rows, d), dt, transforms=transforms)
        pl.run_scoped(
            lambda *scoped: body(q_ref, k_ref, v_ref, out_ref, *scoped),
            tiles(CONSUMERS, c.block_q, dtype), tiles(stages, c.block_kv, dtype), tiles(stages, c.block_kv, dtype),
            tiles(CONSUMERS, c.block_q, out_dtype),
            plgpu.Barrier(num_barriers=stages), plgpu.Barrier(num_barriers=stages), plgpu.Barrier(num_barriers=CONSUMERS),
            plgpu.Barrier(num_arrivals=CONSUMERS, num_barriers=stages), plgpu.Barrier(num_arrivals=CONSUMERS, num_barriers=stages),
            collective_axes="wg",
        )

    # TMA of (8, 64)-tiled rows needs lengths in multiples of 8: pad rows (queries are dropped
    # after, keys past t are masked).
    pad8 = lambda a: jnp.pad(a, ((0, 0), (0, -a.shape[1] % 8), (0, 0), (0, 0)))
    q, k, v = pad8(q), pad8(k), pad8(v)
    out = plgpu.kernel(
        entry,
        out_type=jax.ShapeDtypeStruct(q.shape, out_dtype),
        grid=(h, pl.cdiv(s, CONSUMERS * c.block_q), b),
        grid_names=("heads", "q_tiles", "batch"),
        num_threads=CONSUMERS + 1,
        thread_name="wg",
        compiler_params=plgpu.CompilerParams(approx_math=True),
    )(q, k, v)
    return out[:, :s]
