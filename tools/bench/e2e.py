"""End-to-end benchmark: the whole pipeline at full size with RANDOM weights of the released
shapes, per stage and in total (seconds after compile; compile time separately; peak memory).

  python -m tools.bench.e2e --preset full --dtype bfloat16 [--mesh 1,1,2]
  python -m tools.bench.e2e --preset full --layouts none,cfg2xsp1,cfg1xsp2   # one run per layout

Each stage is run twice through the same calls `LanDiff.generate` makes: the first run includes
compilation, the second is timed. With --layouts, the same weights run one layout after another
(CFG split × sequence split of the guided DiT, as the mesh (data=CFG, fsdp=1, tensor=SP) of the
first CFG·SP devices gives it; 'none': one device), and the end-to-end and diffusion ratios to the
first layout are printed. The compilation cache is on (--nocompilation_cache: compile times of
a cold start). Per-stage component benchmarks live in tools/bench/.
"""

import re
import time

import jax
from absl import flags

from landiff_jax import cli
from tools.bench.common import emit, peak_memory_gb

flags.DEFINE_enum('preset', "full", ['tiny', 'full'], 'preset')
flags.DEFINE_enum('dtype', "bfloat16", ['bfloat16', 'float32'], 'dtype')
flags.DEFINE_enum('dit_attention', None, ['cudnn', 'mosaic', 'xla'],
                  "diffusion attention kernel (default: runtime's: mosaic on H100/H200, also on a mesh; cuDNN on other "
                  "GPUs)")
flags.DEFINE_string('mesh', None, "data,fsdp,tensor sizes, 'auto' (tensor = all devices) or none")
flags.DEFINE_string('also_mesh', None, "then rerun on this mesh with the same weights (for ratios)")
flags.DEFINE_list('layouts', None, "instead of --mesh: DiT layouts run one after another with the same weights, "
                  "e.g. none,cfg2xsp1,cfg1xsp2 (cfgAxspB: the guidance batch split over A devices, each sequence "
                  "over B; 'none': one device)")
flags.DEFINE_enum('lm_weights', None, ['replicated', 'sharded'],
                  "the LM's weights on a mesh (default: runtime.lm_weights' rule)")
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


def parse_layout(spec):
    """'cfgAxspB' -> the mesh (data=A, fsdp=1, tensor=B) over the first A·B devices; 'none' -> None."""
    from landiff_jax.parallel import make_mesh

    if spec == "none":
        return None
    match = re.fullmatch(r"cfg(\d+)xsp(\d+)", spec)
    if not match:
        raise cli.UsageError(f"--layouts: {spec!r} is not 'none' or cfg<A>xsp<B> (e.g. cfg2xsp1)")
    cfg_split, sp = map(int, match.groups())
    if cfg_split * sp > jax.device_count():
        raise cli.UsageError(f"--layouts: {spec} needs {cfg_split * sp} devices, have {jax.device_count()}")
    return make_mesh(cfg_split, 1, sp, devices=jax.devices()[:cfg_split * sp])


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
    if args.layouts and (args.mesh or args.also_mesh):
        raise cli.UsageError("give --layouts or --mesh/--also_mesh, not both")
    if args.layouts:
        meshes = [(spec, parse_layout(spec)) for spec in args.layouts]
    else:
        meshes = [(args.mesh, parse_mesh(args.mesh))] + ([(args.also_mesh, parse_mesh(args.also_mesh))]
                                                         if args.also_mesh else [])
    start = time.perf_counter()
    pipe = jax.block_until_ready(LanDiff.random(cfg, mesh=meshes[0][1], dit_attention=args.dit_attention,
                                                lm_placement=args.lm_weights))
    init_s = time.perf_counter() - start
    prompts = [PROMPT] * args.prompts
    options = GenerateOptions(steps=args.steps)
    results = []
    for number, (spec, mesh) in enumerate(meshes):
        if number:
            pipe = LanDiff(cfg, pipe.params, pipe.tokenizers, random_weights=True, mesh=mesh,
                           dit_attention=args.dit_attention, lm_placement=args.lm_weights)
        layout = describe(pipe, len(prompts))
        print(f"--- {spec or 'none'}: {layout}", flush=True)
        figures = bench_stages(pipe, prompts, options)
        results.append((spec or "none", figures))
        emit({"stage": "end_to_end", "preset": args.preset, "dtype": args.dtype, "prompts": args.prompts,
              "dit_attention": pipe.cfg.dit.attention, "lm_decode_attention": pipe.cfg.lm.decode_attention,
              "steps": pipe.sampler_config(options).num_steps, "layout": layout,
              "mesh": dict(pipe.mesh.shape) if pipe.mesh is not None else None,
              "random_init_s": round(init_s, 1), **figures, **peak_memory_gb()})
    (first, base), rest = results[0], results[1:]
    for spec, figures in rest:
        print(f"{spec} vs {first}: end to end {base['total_s'] / figures['total_s']:.2f}x, "
              f"diffusion {base['diffusion_s'] / figures['diffusion_s']:.2f}x, "
              f"LM {base['lm_sample_s'] / figures['lm_sample_s']:.2f}x", flush=True)


def describe(pipe, prompts: int) -> str:
    """The DiT's CFG × SP layout and the LM's placement on the pipeline's mesh."""
    from landiff_jax.parallel import axes_size, guided_layout

    if pipe.mesh is None:
        return "one device"
    layout = guided_layout(pipe.mesh, 2 * prompts)
    return (f"DiT CFG {axes_size(pipe.mesh, layout.batch)} x SP {axes_size(pipe.mesh, layout.sequence)}, "
            f"LM weights {pipe.lm_placement}")


if __name__ == "__main__":
    cli.run(main, compiles=True)
