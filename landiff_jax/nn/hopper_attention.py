"""Flash attention for Hopper GPUs (H100/H200) in Pallas Mosaic GPU: the DiT's 'mosaic'
attention (no mask, no bias; any sequence length), its default on one Hopper GPU.

One CTA per (head, pair of query tiles, batch) with three warpgroups: two consumers own one
`block_q` query tile each, a producer streams K/V tiles by TMA into a ring of `stages` shared
memory slots. The consumers take turns on the tensor cores through a shared barrier (one's QK
and PV GEMMs run while the other computes its softmax). Sequence tails need no padding: TMA
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
_HALF = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


@dataclasses.dataclass(frozen=True)
class HopperAttentionConfig:
    block_q: int = 128  # query rows per consumer warpgroup
    block_kv: int = 128  # keys per pipeline step
    stages: int = 2  # K/V shared-memory slots in flight

    def __post_init__(self):
        if self.block_q % 64 or self.block_kv % 64:
            raise ValueError(f"block_q and block_kv must be multiples of 64, got {self.block_q}, {self.block_kv}")
        if self.stages < 2:
            raise ValueError(f"stages must be at least 2, got {self.stages}")


def hopper_attention(q, k, v, *, scale: float | None = None, out_dtype=None,
                     config: HopperAttentionConfig = HopperAttentionConfig()):
    """softmax(q·kᵀ·scale) v for q [b s h d], k/v [b t h d] in float16 or bfloat16 (all alike);
    d a multiple of 64. Returns [b s h d] in out_dtype (default q's dtype)."""
    b, s, h, d = q.shape
    t = k.shape[1]
    if k.shape != (b, t, h, d) or v.shape != k.shape:
        raise ValueError(f"k and v must be [{b}, t, {h}, {d}] like q {q.shape}, got {k.shape}, {v.shape}")
    dtype = jnp.dtype(q.dtype)
    if dtype not in _HALF or k.dtype != dtype or v.dtype != dtype:
        raise ValueError(f"q, k, v must all be float16 or bfloat16, got {q.dtype}, {k.dtype}, {v.dtype}")
    if t == 0 or s == 0:
        raise ValueError(f"empty sequence: q {q.shape}, k {k.shape}")
    if d % 64:
        raise ValueError(f"head dim must be a multiple of 64, got {d}")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out_dtype = jnp.dtype(out_dtype or dtype)
    if out_dtype not in _HALF:
        raise ValueError(f"out_dtype must be float16 or bfloat16, got {out_dtype}")
    c = config
    steps = pl.cdiv(t, c.block_kv)
    stages = min(c.stages, steps)
    tail = t % c.block_kv  # keys in the last, partial tile (0: all tiles full)
    log2_scale = scale * LOG2E

    def consumer(q_ref, out_ref, smem, barriers):
        q_smem, k_smem, v_smem, o_smem = smem
        k_ready, v_ready, q_ready, k_free, v_free, turn = barriers
        wg = lax.axis_index("wg")
        batch, head = lax.axis_index("batch"), lax.axis_index("heads")
        row0 = lax.axis_index("q_tiles") * (2 * c.block_q) + wg * c.block_q
        q_tile = q_smem.at[wg]
        plgpu.copy_gmem_to_smem(q_ref.at[batch, pl.ds(row0, c.block_q), head], q_tile, q_ready.at[wg])
        plgpu.barrier_wait(q_ready.at[wg])

        def take_turn():
            plgpu.barrier_arrive(turn)
            plgpu.barrier_wait(turn)

        def step(i, carry, masked=False):
            acc, m, l = carry
            slot = lax.rem(i, jnp.int32(stages))

            def qk_gemm(acc_ref):
                plgpu.wgmma(acc_ref, q_tile, plgpu.transpose_ref(k_smem.at[slot], (1, 0)))
                take_turn()
                return acc_ref[...]

            scores = pl.run_scoped(qk_gemm, plgpu.ACC((c.block_q, c.block_kv), jnp.float32))
            plgpu.barrier_arrive(k_free.at[slot])
            if masked:
                key = plgpu.broadcasted_iota(jnp.int32, scores.shape, 1, layout=plgpu.Layout.WGMMA)
                scores = jnp.where(key < tail, scores, -jnp.inf)
            m_new = jnp.maximum(m, scores.max(axis=1) * log2_scale)  # running max, base-2 units
            alpha = jnp.exp2(m - m_new)
            p32 = jnp.exp2(scores * log2_scale - lax.broadcast_in_dim(m_new, scores.shape, [0]))
            acc *= lax.broadcast_in_dim(alpha, acc.shape, [0])
            l *= alpha
            p = p32.astype(dtype)  # this order (sum after the cast) keeps it off register spills
            l += p32.sum(axis=1)
            acc, l, m_new, p = lax.optimization_barrier((acc, l, m_new, p))
            plgpu.barrier_arrive(turn)  # softmax done
            plgpu.barrier_wait(v_ready.at[slot])
            plgpu.barrier_wait(turn)  # tensor cores free

            def pv_gemm(acc_ref):
                plgpu.wgmma(acc_ref, p, v_smem.at[slot])
                nxt = i + 1

                @pl.when(nxt < steps)
                def _():
                    plgpu.barrier_wait(k_ready.at[lax.rem(nxt, jnp.int32(stages))])

            acc = pl.run_state(pv_gemm)(plgpu.ACC.init(acc))
            plgpu.barrier_arrive(v_free.at[slot])
            return acc, m_new, l

        reduced = plgpu.Layout.WGMMA.reduce(1)
        carry = (plgpu.layout_cast(jnp.zeros((c.block_q, d), jnp.float32), plgpu.Layout.WGMMA),
                 plgpu.layout_cast(jnp.full((c.block_q,), -jnp.inf, jnp.float32), reduced),
                 plgpu.layout_cast(jnp.zeros((c.block_q,), jnp.float32), reduced))
        plgpu.barrier_wait(k_ready.at[0])
        pl.when(wg == 1)(take_turn)
        full = steps - 1 if tail else steps
        carry = lax.fori_loop(0, full, step, carry)
        if tail:  # a one-trip loop keeps the step index traced
            carry = lax.fori_loop(full, steps, functools.partial(step, masked=True), carry)
        pl.when(wg == 0)(take_turn)
        acc, _, l = carry
        o_tile = o_smem.at[wg]
        o_tile[...] = (acc / lax.broadcast_in_dim(l, acc.shape, [0])).astype(out_dtype)
        plgpu.commit_smem()
        plgpu.copy_smem_to_gmem(o_tile, out_ref.at[batch, pl.ds(row0, c.block_q), head])
        plgpu.wait_smem_to_gmem(0)

    def producer(k_ref, v_ref, smem, barriers):
        _, k_smem, v_smem, _ = smem
        k_ready, v_ready, _, k_free, v_free, _ = barriers
        batch, head = lax.axis_index("batch"), lax.axis_index("heads")

        def load(i, slot):
            rows = (batch, pl.ds(i * c.block_kv, c.block_kv), head)
            plgpu.copy_gmem_to_smem(k_ref.at[rows], k_smem.at[slot], k_ready.at[slot])
            plgpu.copy_gmem_to_smem(v_ref.at[rows], v_smem.at[slot], v_ready.at[slot])

        pl.loop(0, stages)(lambda i: load(i, i))  # a traced start: the last tile may pass the end

        @pl.loop(stages, steps)
        def _(i):
            slot = lax.rem(i, jnp.int32(stages))
            plgpu.barrier_wait(k_free.at[slot])
            plgpu.barrier_wait(v_free.at[slot])
            load(i, slot)

    def body(q_ref, k_ref, v_ref, out_ref, *scoped):
        smem, barriers = scoped[:4], scoped[4:]
        wg = lax.axis_index("wg")

        @pl.when(wg < 2)
        def _():
            plgpu.set_max_registers(232, action="increase")
            consumer(q_ref, out_ref, smem, barriers)

        @pl.when(wg == 2)
        def _():
            plgpu.set_max_registers(40, action="decrease")
            producer(k_ref, v_ref, smem, barriers)

    def entry(q_ref, k_ref, v_ref, out_ref):
        transforms = (plgpu.TilingTransform((8, 64)), plgpu.SwizzleTransform(128))
        tiles = lambda n, rows, dt: plgpu.SMEM((n, rows, d), dt, transforms=transforms)
        pl.run_scoped(
            lambda *scoped: body(q_ref, k_ref, v_ref, out_ref, *scoped),
            tiles(2, c.block_q, dtype), tiles(stages, c.block_kv, dtype), tiles(stages, c.block_kv, dtype),
            tiles(2, c.block_q, out_dtype),
            plgpu.Barrier(num_barriers=stages), plgpu.Barrier(num_barriers=stages), plgpu.Barrier(num_barriers=2),
            plgpu.Barrier(num_arrivals=2, num_barriers=stages), plgpu.Barrier(num_arrivals=2, num_barriers=stages),
            plgpu.Barrier(num_arrivals=2),
            collective_axes="wg",
        )

    # TMA of (8, 64)-tiled rows needs lengths in multiples of 8: pad rows (queries are dropped
    # after, keys past t are masked).
    pad8 = lambda a: jnp.pad(a, ((0, 0), (0, -a.shape[1] % 8), (0, 0), (0, 0)))
    q, k, v = pad8(q), pad8(k), pad8(v)
    out = plgpu.kernel(
        entry,
        out_type=jax.ShapeDtypeStruct(q.shape, out_dtype),
        grid=(h, pl.cdiv(s, 2 * c.block_q), b),
        grid_names=("heads", "q_tiles", "batch"),
        num_threads=3,
        thread_name="wg",
        compiler_params=plgpu.CompilerParams(approx_math=True),
    )(q, k, v)
    return out[:, :s]
