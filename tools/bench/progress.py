"""Cost of the live progress reports of the LM and diffusion loops (host calls of blocks): each
sampler timed with progress off (one compiled call) and on (a callback that only counts), RANDOM
weights of the released shapes, through the pipeline's own stage calls.

  python -m tools.bench.progress --preset full --dtype bfloat16 [--stages lm,diffusion] [--steps 10]

Each variant is compiled first (untimed), then the two are timed alternately `--repeats` times;
the overhead is (median on − median off) / median off. One JSON line per stage.
"""

import time

import jax
from absl import app, flags

from tools.bench.common import emit

flags.DEFINE_enum("preset", "full", ["tiny", "full"], "preset")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "dtype")
flags.DEFINE_list("stages", ["lm", "diffusion"], "samplers to measure: lm, diffusion")
flags.DEFINE_integer("steps", 10, "diffusion steps (the per-step cost does not depend on the count)")
flags.DEFINE_integer("repeats", 3, "timed runs per variant")
FLAGS = flags.FLAGS

PROMPT = "A small red fox walks slowly across a quiet forest at dawn, soft light, cinematic."


def timings(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times


def compare(name: str, run, total_steps: int) -> None:
    """run(progress) → the sampler's output; progress None (off) or a counting callback (on)."""
    events = []
    count = lambda event: events.append(event.step) if event.event == "step" else None  # noqa: E731
    for progress in (None, count):  # compile both variants (untimed)
        jax.block_until_ready(run(progress))
    reports_per_call = len(events)
    off, on = [], []
    for _ in range(FLAGS.repeats):
        off += timings(lambda: run(None), 1)
        on += timings(lambda: run(count), 1)
    off_s, on_s = sorted(off)[len(off) // 2], sorted(on)[len(on) // 2]
    emit({"stage": f"progress_{name}", "steps": total_steps, "reports_per_call": reports_per_call,
          "off_s": round(off_s, 4), "on_s": round(on_s, 4), "overhead_pct": round(100 * (on_s - off_s) / off_s, 3)})


def main(argv):
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.lm import layout
    from landiff_jax.pipeline import GenerateOptions, LanDiff

    cfg = LanDiffConfig.preset(FLAGS.preset).with_dtype(FLAGS.dtype)
    pipe = LanDiff.random(cfg)
    t = cfg.max_latent_frames
    options = GenerateOptions(steps=FLAGS.steps)
    prompts = [PROMPT]
    if "lm" in FLAGS.stages:
        steps = layout.frame_layout(cfg.lm.codebook_size, cfg.lm.iframe_tokens, cfg.lm.pframe_tokens,
                                    cfg.lm.segment_length, t).steps
        compare("lm", lambda progress: pipe.sample_codes(prompts, t, options, progress=progress).codes, steps)
    if "diffusion" in FLAGS.stages:
        codes = pipe.sample_codes(prompts, t, options).codes
        context, uncond = pipe.text_context(prompts)
        feature = pipe.semantic_feature(codes, t)
        compare("diffusion", lambda progress: pipe.sample_latents(context, uncond, feature, options, progress=progress),
                pipe.sampler_config(options).num_steps)


if __name__ == "__main__":
    app.run(main)
