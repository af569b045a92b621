"""Benchmark of the diffusion stage: one guided sampler step (control DiT on the doubled batch
[uncond; cond], denoiser, CFG, DPM++ update) and the whole jitted N-step loop.

usage: python -m tools.bench.dit --preset full --dtype bfloat16 [--steps 50] [--batch 1]
       [--repeats 5] [--loop_repeats 2] [--noloop] [--attention auto|xla|cudnn|mosaic] [--compare]
Random weights of the released shapes are drawn on the device by one jitted function (nothing
full-size on the host). Prints one JSON line: ms per guided step after compile, compile
seconds, the loop's ms per step and total seconds, peak device memory, the analytic TFLOP per
step (matmuls + attention of every layer, main and control), achieved TFLOP/s and MFU against
the nominal 800 TFLOP/s and against a bf16 matmul peak measured here.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from absl import app, flags

from landiff_jax import diffusion, runtime
from landiff_jax.diffusion.config import DiTConfig, SamplerConfig
from landiff_jax.diffusion.sampler import (
    Carry,
    guided_step,
    initial_latent,
    sample_loop,
    step_inputs,
)
from landiff_jax.diffusion.schedule import denoiser_sigma_table, step_schedule
from landiff_jax.nn.init import random_params
from landiff_jax.tokenizer import TokenizerConfig
from tools.bench.common import emit, peak_memory_gb, time_jitted

flags.DEFINE_enum('preset', "tiny", ['tiny', 'full'], 'preset')
flags.DEFINE_enum('dtype', "bfloat16", ['bfloat16', 'float32'], 'dtype')
flags.DEFINE_integer('steps', None, "sampler steps (default 50 full, 4 tiny)")
flags.DEFINE_integer('batch', 1, "prompts per call (the network sees 2× with guidance)")
flags.DEFINE_integer('frames', None, "latent frames (default: the config's)")
flags.DEFINE_integer('repeats', 5, 'repeats')
flags.DEFINE_integer('loop_repeats', 2, 'loop repeats')
flags.DEFINE_bool('loop', True, "also time the whole sampling loop (--noloop: the single guided step only)")
flags.DEFINE_enum('attention', "auto", ['auto', 'xla', 'cudnn', 'mosaic'], 'attention')
flags.DEFINE_bool('compare', False, "also run the step with cuDNN attention and report the largest output difference")
FLAGS = flags.FLAGS

NOMINAL_PEAK = 800e12  # bf16 dense matmul FLOP/s the issue measures on one H100


def step_flops(cfg: DiTConfig, rows: int, frames: int) -> float:
    """FLOPs of one network call on `rows` sequences: per layer 24·d²·s (qkv, out, MLP ×4) and
    4·s²·d (scores and values), over main + control layers; embeddings/final layer omitted."""
    s = cfg.text_length + cfg.num_video_tokens(frames)
    d = cfg.hidden_size
    per_layer = 2 * s * (3 * d * d + d * d + 2 * cfg.mlp_ratio * d * d) + 4 * s * s * d
    return rows * (cfg.num_layers + cfg.control_layers) * per_layer


def matmul_peak(n: int = 8192) -> float | None:
    """Measured bf16 matmul FLOP/s on device 0 (None on CPU)."""
    if jax.default_backend() == "cpu":
        return None
    a = jax.jit(lambda k: jax.random.normal(k, (n, n), jnp.bfloat16))(jax.random.key(1))
    _, ms = time_jitted(jax.jit(lambda x, y: x @ y), a, a, repeats=20)
    return 2 * n**3 / (ms / 1e3)


@dataclasses.dataclass
class StepCase:
    """Random inputs and weights of one guided sampler step: latent x, prompt context and its
    unconditional zeros, semantic feature, schedule inputs xs, sigma table, noise key."""

    params: dict
    x: jax.Array
    context: jax.Array
    uncond: jax.Array
    semantic: jax.Array
    xs: object
    table: jax.Array
    key: jax.Array

    def step_args(self) -> tuple:
        """Arguments of `step_fn(cfg)`: a middle step (full update) on [uncond; cond]."""
        middle = jax.tree.map(lambda a: a[1], self.xs)
        return (self.params, Carry(self.x, self.x), middle, jnp.concatenate([self.uncond, self.context]),
                self.semantic, self.table, self.key)


def step_case(cfg: DiTConfig, sampler_cfg: SamplerConfig, batch: int, frames: int) -> StepCase:
    shape = (batch, frames, cfg.latent_height, cfg.latent_width, cfg.in_channels)
    keys = jax.random.split(jax.random.key(0), 4)
    context = jax.random.normal(keys[0], (batch, cfg.text_length, cfg.text_hidden_size), jnp.float32).astype(cfg.dtype)
    semantic = (0.1 * jax.random.normal(keys[1], (1, *shape[1:]), jnp.float32)).astype(cfg.dtype)
    x = initial_latent(shape, key=keys[2])
    params = random_params(diffusion.abstract_params(cfg, TokenizerConfig.tiny())["dit"], seed=3)
    table = jnp.asarray(denoiser_sigma_table(sampler_cfg.denoiser_num_idx, sampler_cfg.denoiser_shift_scale))
    return StepCase(params, x, context, jnp.zeros_like(context), semantic, step_inputs(step_schedule(sampler_cfg)),
                    table, keys[2])


def step_fn(cfg: DiTConfig):
    """One jitted guided step (network on the doubled batch, denoiser, CFG, update) -> next latent."""
    return jax.jit(lambda p_, carry, step, ctx, sem, tab, k_: guided_step(cfg, p_, ctx, sem, tab, k_, carry, step)[0].x)


def main(argv):
    args = FLAGS

    dtype = jnp.dtype(args.dtype)
    preset = DiTConfig.full if args.preset == "full" else DiTConfig.tiny
    auto = runtime.choose(dtype, preset().head_dim).full_attention
    impl = auto if args.attention == "auto" else args.attention
    cfg = preset(dtype=dtype, param_dtype=dtype, attention=impl)
    steps = args.steps or (50 if args.preset == "full" else 4)
    sampler_cfg = SamplerConfig(num_steps=steps, cfg_num_steps=steps)
    b, frames = args.batch, args.frames or cfg.latent_frames
    case = step_case(cfg, sampler_cfg, b, frames)
    n_params = sum(int(v.size) for v in jax.tree.leaves(case.params))
    step_compile_s, step_ms = time_jitted(step_fn(cfg), *case.step_args(), repeats=args.repeats)

    compare = {}
    if args.compare:
        reference = dataclasses.replace(cfg, attention="cudnn")
        outs = [step_fn(c)(*case.step_args()).astype(jnp.float32) for c in (cfg, reference)]
        compare = dict(compare_max_abs_diff_vs_cudnn=float(jnp.max(jnp.abs(outs[0] - outs[1]))),
                       compare_output_max_abs=float(jnp.max(jnp.abs(outs[1]))))

    flops = step_flops(cfg, 2 * b, frames)
    peak = matmul_peak()
    figures = dict(
        stage="dit", preset=args.preset, dtype=args.dtype, attention=impl, batch=b, network_batch=2 * b,
        frames=frames, tokens=cfg.text_length + cfg.num_video_tokens(frames),
        layers=cfg.num_layers + cfg.control_layers, n_params=n_params, steps=steps,
        step_ms=round(step_ms, 3), step_compile_s=round(step_compile_s, 2),
        tflop_per_step=float(f"{flops / 1e12:.4g}"), step_tflops=float(f"{flops / step_ms / 1e9:.4g}"),
        mfu_nominal=round(flops / (step_ms / 1e3) / NOMINAL_PEAK, 4), **compare,
    )
    if peak:
        figures.update(matmul_peak_tflops=round(peak / 1e12, 1), mfu_measured=round(flops / (step_ms / 1e3) / peak, 4))
    if args.loop:
        loop = jax.jit(lambda p_, xs_, x_, *rest: sample_loop(p_, xs_, x_, *rest, cfg=cfg)[0])
        loop_compile_s, loop_ms = time_jitted(loop, case.params, case.xs, case.x, case.context, case.uncond,
                                              case.semantic, case.table, case.key, repeats=args.loop_repeats)
        figures.update(loop_ms_per_step=round(loop_ms / steps, 3), loop_total_s=round(loop_ms / 1e3, 3),
                       loop_compile_s=round(loop_compile_s, 2),
                       loop_tflops=float(f"{flops * steps / loop_ms / 1e9:.4g}"))
    emit({**figures, **peak_memory_gb(), "config": {k: str(v) for k, v in dataclasses.asdict(cfg).items()
                                                    if k not in ("semantic",)}})


if __name__ == "__main__":
    app.run(main)
