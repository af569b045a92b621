"""Per-kernel GPU time of one DiT guided step or of one LM sampling call (random weights of the
released shapes, bf16), from a jax.profiler trace: where a stage's time goes.

usage: python tools/bench/kernels.py dit|lm [--top 40] [--attention cudnn|mosaic]
Prints one JSON line per kernel name (ms per DiT step or per LM sampled position, calls per
unit), largest first, after a line with the unit's total kernel time and kernel count.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def kernel_times(fn, *args) -> tuple[collections.Counter, collections.Counter]:
    """(ns, calls) per kernel name on device 0 for one call of jitted `fn` after two warm-ups."""
    compiled = jax.jit(fn).lower(*args).compile()
    for _ in range(2):
        jax.block_until_ready(compiled(*args))
    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory):
            jax.block_until_ready(compiled(*args))
        trace = next(Path(directory).rglob("*.xplane.pb"))
        profile = jax.profiler.ProfileData.from_file(str(trace))
    ns, calls = collections.Counter(), collections.Counter()
    for plane in profile.planes:
        if plane.name.startswith("/device:GPU:0"):
            for line in plane.lines:
                for event in line.events:
                    ns[event.name] += event.duration_ns
                    calls[event.name] += 1
    return ns, calls


def dit_step(attention: str):
    from dit import random_params

    from landiff_jax.diffusion.config import DiTConfig, SamplerConfig
    from landiff_jax.diffusion.dit import ControlDiT
    from landiff_jax.diffusion.sampler import Carry, guided_step, initial_latent, step_inputs
    from landiff_jax.diffusion.schedule import denoiser_sigma_table, step_schedule

    cfg = DiTConfig.full(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, attention=attention)
    sampler = SamplerConfig()
    shape = (1, cfg.latent_frames, cfg.latent_height, cfg.latent_width, cfg.in_channels)
    keys = jax.random.split(jax.random.key(0), 4)
    context = jax.random.normal(keys[0], (1, cfg.text_length, cfg.text_hidden_size)).astype(jnp.bfloat16)
    semantic = (0.1 * jax.random.normal(keys[1], shape)).astype(jnp.bfloat16)
    x = initial_latent(shape, key=keys[2])
    params = random_params(ControlDiT(cfg), keys[3], x, jnp.zeros((1,)), context, semantic)
    table = jnp.asarray(denoiser_sigma_table(sampler.denoiser_num_idx, sampler.denoiser_shift_scale))
    step = jax.tree.map(lambda a: a[1], step_inputs(step_schedule(sampler)))  # a middle step
    fn = lambda p, carry, s, ctx, sem, tab, k: guided_step(cfg, p, ctx, sem, tab, k, carry, s)[0].x
    args = (params, Carry(x, x), step, jnp.concatenate([jnp.zeros_like(context), context]), semantic, table, keys[2])
    return fn, args, 1


def lm_sampling(frames: int = 13, text_tokens: int = 64):
    from landiff_jax.lm import layout as L
    from landiff_jax.lm.config import LMConfig
    from landiff_jax.lm.model import init_params
    from landiff_jax.lm.sampler import SampleOptions, _sample, micro_values

    cfg = LMConfig.full(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    hidden = jax.random.normal(jax.random.key(1), (1, text_tokens, cfg.text_dim), jnp.bfloat16)
    args = (init_params(cfg, jax.random.key(0)), hidden, jnp.ones((1, text_tokens), bool),
            jnp.asarray(micro_values(cfg, frames, 2.5, 1)), jax.random.split(jax.random.key(2), 1),
            SampleOptions.create(guidance_scale=6.5), None)
    steps = L.frame_layout(cfg.codebook_size, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length, frames).steps
    return functools.partial(_sample, cfg=cfg, num_frames=frames, trace=False), args, steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=("dit", "lm"))
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--attention", choices=("cudnn", "mosaic"), default="cudnn", help="DiT attention kernel")
    args = p.parse_args(argv)
    fn, call_args, units = dit_step(args.attention) if args.stage == "dit" else lm_sampling()
    ns, calls = kernel_times(fn, *call_args)
    unit = "step" if args.stage == "dit" else "sampled position"
    print(json.dumps({"stage": args.stage, "device": jax.devices()[0].device_kind, "unit": unit,
                      "kernel_ms_per_unit": round(sum(ns.values()) / 1e6 / units, 4),
                      "kernels_per_unit": round(sum(calls.values()) / units, 1)}), flush=True)
    for name, total in ns.most_common(args.top):
        print(json.dumps({"kernel": name[:120], "ms_per_unit": round(total / 1e6 / units, 4),
                          "calls_per_unit": round(calls[name] / units, 2)}), flush=True)


if __name__ == "__main__":
    main()
