"""End-to-end benchmark: the whole pipeline at full size with RANDOM weights of the released
shapes, per stage and in total (seconds after compile; compile time separately; peak memory).

  python -m tools.bench.e2e --preset full --dtype bfloat16 [--mesh 1,1,2]

Each stage is run twice through the same calls `LanDiff.generate` makes: the first run includes
compilation, the second is timed. Per-stage component benchmarks live in tools/bench/.
"""

import time

import jax
from absl import app, flags

from tools.bench.common import emit, peak_memory_gb

flags.DEFINE_enum('preset', "full", ['tiny', 'full'], 'preset')
flags.DEFINE_enum('dtype', "bfloat16", ['bfloat16', 'float32'], 'dtype')
flags.DEFINE_enum('dit_attention', None, ['cudnn', 'mosaic', 'xla'],
                  "diffusion attention kernel (default: runtime's: mosaic on one H100/H200, cuDNN on other GPUs)")
flags.DEFINE_string('mesh', None, "data,fsdp,tensor sizes, 'auto' (tensor = all devices) or none")
flags.DEFINE_string('also_mesh', None, "then rerun on this mesh with the same weights (for ratios)")
flags.DEFINE_integer('prompts', 1, 'prompts')
flags.DEFINE_integer('steps', None, "diffusion steps (default: the config's, 50 at full size)")
FLAGS = flags.FLAGS

PROMPT = "A small red fox walks slowly across a quiet forest at dawn, soft light, cinematic."


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def parse_mesh(spec):
    from landiff_jax.parallel import make_mesh

    if not spec or spec == "none":
        return None
    if spec == "auto":
        return make_mesh(data=1, fsdp=1, tensor=-1)
    return make_mesh(*map(int, spec.split(",")))


def bench_stages(pipe, prompts, options) -> dict:
    """Each stage twice through the pipeline's own calls: compile+run, then the timed run."""
    from landiff_jax.text import encode_for_lm

    cfg, t, figures = pipe.cfg, pipe.cfg.max_latent_frames, {}

    def run_stage(name, fn):
        _, first = timed(fn)
        out, second = timed(fn)
        figures[f"{name}_s"] = round(second, 4)
        figures[f"{name}_compile_s"] = round(max(first - second, 0.0), 2)
        print(f"{name}: {second:.3f} s (first call {first:.1f} s)", flush=True)
        return out

    run_stage("t5_lm_encode",
              lambda: encode_for_lm(pipe.tokenizers["t5_lm"], pipe.params["t5_lm"], cfg.t5_lm, prompts)[0])
    codes = run_stage("lm_sample", lambda: pipe.sample_codes(prompts, t, options).codes)
    context, uncond = run_stage("t5_dit_encode", lambda: pipe.text_context(prompts))
    feature = run_stage("semantic_conditioner", lambda: pipe.semantic_feature(codes, t))
    latents = run_stage("diffusion", lambda: pipe.sample_latents(context, uncond, feature, options))
    run_stage("vae_decode", lambda: pipe.decode(latents))
    figures["total_s"] = round(sum(v for k, v in figures.items() if not k.endswith("compile_s")), 3)
    return figures


def main(argv):
    args = FLAGS

    from landiff_jax.config import LanDiffConfig
    from landiff_jax.pipeline import GenerateOptions, LanDiff

    cfg = LanDiffConfig.preset(args.preset).with_dtype(args.dtype)
    start = time.perf_counter()
    pipe = jax.block_until_ready(LanDiff.random(cfg, mesh=parse_mesh(args.mesh), dit_attention=args.dit_attention))
    init_s = time.perf_counter() - start
    prompts = [PROMPT] * args.prompts
    options = GenerateOptions(steps=args.steps)
    runs = [(args.mesh, pipe)]
    if args.also_mesh:
        runs.append((args.also_mesh, LanDiff(cfg, pipe.params, pipe.tokenizers, random_weights=True,
                                             mesh=parse_mesh(args.also_mesh), dit_attention=args.dit_attention)))
    for mesh_spec, run_pipe in runs:
        print(f"--- mesh {mesh_spec or 'none (one device)'}", flush=True)
        figures = bench_stages(run_pipe, prompts, options)
        emit({"stage": "end_to_end", "preset": args.preset, "dtype": args.dtype, "prompts": args.prompts,
              "dit_attention": args.dit_attention or "default",
              "steps": run_pipe.sampler_config(options).num_steps,
              "mesh": dict(run_pipe.mesh.shape) if run_pipe.mesh is not None else None,
              "random_init_s": round(init_s, 1), **figures, **peak_memory_gb()})


if __name__ == "__main__":
    app.run(main)
