"""Long-video (streaming) benchmark: seconds per chunk and per LM group, and peak memory, of one
generation of --num_frames through `LanDiff.generate_stream`, RANDOM weights of the chosen preset.

  python -m tools.bench.stream --preset full --dtype bfloat16 --num_frames 193 --also_frames 49

--also_frames runs first (e.g. the one-chunk 49 frames), so that its peak memory is read before
the long run's (a device's peak only grows). A chunk's seconds are its wall time minus the time
jax spent tracing and compiling during it (listed apart: every stage compiles in the first chunk
or two); its stages' raw seconds come from the pipeline's progress events. One JSON line per
length; s_per_group = run seconds / LM groups, s_per_frame = run seconds / video frames.
"""

import time

from absl import app, flags

from tools.bench.common import CompileClock, emit, peak_memory_gb

flags.DEFINE_enum("preset", "full", ["tiny", "full"], "preset")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "dtype")
flags.DEFINE_integer("num_frames", 193, "video frames of the long run (full: 73, 97, ..., 193, ...)")
flags.DEFINE_integer("also_frames", None, "a run of this many frames first (e.g. 49: one chunk), for the ratios")
flags.DEFINE_integer("steps", None, "diffusion steps (default: the config's, 50 at full size)")
flags.DEFINE_integer("lm_window", None, "LM groups the KV cache holds (default: the whole sequence)")
flags.DEFINE_enum("dit_attention", None, ["cudnn", "mosaic", "xla"], "diffusion attention kernel (default: runtime's)")
FLAGS = flags.FLAGS

PROMPT = "A small red fox walks slowly across a quiet forest at dawn, soft light, cinematic."


def run(pipe, frames: int, clock: CompileClock) -> dict:
    from landiff_jax.pipeline import GenerateOptions

    options = GenerateOptions(num_frames=frames, steps=FLAGS.steps, lm_window=FLAGS.lm_window)
    events, chunks = [], []
    start = last = time.perf_counter()
    compiled_before = clock.seconds
    for chunk in pipe.generate_stream([PROMPT], options, progress=events.append):
        now = time.perf_counter()
        compiled = clock.seconds - compiled_before
        stages = {}
        for e in events:  # raw stage seconds (compiles included), by kind: LM, semantic feature, diffusion, VAE
            if e.event == "done":
                kind = e.stage.split(":")[0]
                stages[kind] = round(stages.get(kind, 0.0) + e.seconds, 3)
        chunks.append(dict(frames=int(chunk.frames.shape[1]), latents=int(chunk.latents.shape[1]),
                           codes=int(chunk.codes.shape[1]), seconds=round(now - last - compiled, 3),
                           compile_s=round(compiled, 2), stages=stages, finite=bool(chunk.finite.all())))
        print(f"chunk {chunk.index}: {chunks[-1]}", flush=True)
        events.clear()
        last, compiled_before = now, clock.seconds
    wall = time.perf_counter() - start
    cfg, t = pipe.cfg, pipe.cfg.latent_frames(frames, streaming=True)
    groups = -(-t // cfg.lm.segment_length)
    compile_s = sum(c["compile_s"] for c in chunks)
    run_s = wall - compile_s
    return dict(frames=frames, latent_frames=t, groups=groups, chunks=len(chunks), wall_s=round(wall, 2),
                compile_s=round(compile_s, 2), run_s=round(run_s, 2), s_per_group=round(run_s / groups, 2),
                s_per_frame=round(run_s / frames, 4), per_chunk=chunks, **peak_memory_gb())


def main(argv):
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.pipeline import GenerateOptions, LanDiff

    cfg = LanDiffConfig.preset(FLAGS.preset).with_dtype(FLAGS.dtype)
    start = time.perf_counter()
    pipe = LanDiff.random(cfg, dit_attention=FLAGS.dit_attention)
    init_s = time.perf_counter() - start
    lengths = [f for f in (FLAGS.also_frames, FLAGS.num_frames) if f]
    clock = CompileClock()
    for frames in lengths:
        cfg.latent_frames(frames, streaming=True)  # a bad length fails before any run
    for frames in lengths:
        steps = pipe.sampler_config(GenerateOptions(steps=FLAGS.steps)).num_steps
        emit({"stage": "stream", "preset": FLAGS.preset, "dtype": FLAGS.dtype, "steps": steps,
              "stream_prefix": cfg.stream_prefix, "random_init_s": round(init_s, 1), **run(pipe, frames, clock)})


if __name__ == "__main__":
    app.run(main)
