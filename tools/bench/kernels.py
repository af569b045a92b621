"""Per-kernel GPU time of one DiT guided step or of one LM sampling call (random weights of the
released shapes, bf16), from a jax.profiler trace: where a stage's time goes.

usage: python -m tools.bench.kernels --stage dit|lm [--top 40] [--dit_attention cudnn|mosaic]
Prints one JSON line per kernel name (ms per DiT step or per LM sampled position, calls per
unit), largest first, after a line with the unit's total kernel time and kernel count.
"""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags

flags.DEFINE_enum('stage', None, ['dit', 'lm'], 'stage', required=True)
flags.DEFINE_integer('top', 40, 'top')
flags.DEFINE_enum('dit_attention', None, ['cudnn', 'mosaic'],
                  "DiT attention kernel (default: the config's, 'xla'; give mosaic or cudnn on a GPU)")
FLAGS = flags.FLAGS


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


def dit_step(attention: str | None):
    from landiff_jax.diffusion.config import DiTConfig, SamplerConfig
    from tools.bench.dit import step_case, step_fn

    cfg = DiTConfig.full(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, attention=attention)
    return step_fn(cfg), step_case(cfg, SamplerConfig(), 1, cfg.latent_frames).step_args(), 1


def lm_sampling(frames: int = 13, text_tokens: int = 64):
    from landiff_jax.lm import layout as L
    from landiff_jax.lm.config import LMConfig
    from landiff_jax.lm.sampler import SampleOptions
    from tools.bench.lm import sampling_inputs

    cfg = LMConfig.full(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    fn, args = sampling_inputs(cfg, frames, 1, text_tokens, SampleOptions.create(guidance_scale=6.5))
    steps = L.frame_layout(cfg.codebook_size, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length, frames).steps
    return fn, args, steps


def main(argv):
    args = FLAGS
    fn, call_args, units = dit_step(args.dit_attention) if args.stage == "dit" else lm_sampling()
    ns, calls = kernel_times(fn, *call_args)
    unit = "step" if args.stage == "dit" else "sampled position"
    print(json.dumps({"stage": args.stage, "device": jax.devices()[0].device_kind, "unit": unit,
                      "kernel_ms_per_unit": round(sum(ns.values()) / 1e6 / units, 4),
                      "kernels_per_unit": round(sum(calls.values()) / units, 1)}), flush=True)
    for name, total in ns.most_common(args.top):
        print(json.dumps({"kernel": name[:120], "ms_per_unit": round(total / 1e6 / units, 4),
                          "calls_per_unit": round(calls[name] / units, 2)}), flush=True)


if __name__ == "__main__":
    app.run(main)
