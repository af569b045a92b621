"""Generate videos from text prompts: prompt(s) → LM semantic tokens → latents → mp4 (8 fps).

  python tools/generate.py --checkpoint ckpts/landiff-jax --prompt "A red fox walks through snow."
  python tools/generate.py --config configs/tiny.py --random_weights   # no files: RANDOM weights
  (--preset tiny is the shorthand for --config configs/tiny.py)

Writes <output_dir>/<n>_<prompt>.mp4 and the semantic tokens as <n>_<prompt>.npy (reusable with
--codes to skip the LM). Defaults follow the original CLI (LM cfg 7.5, motion score 0.1, seed 42,
50 diffusion steps, dynamic CFG 6 / exp 5).
"""

import re
from pathlib import Path

from absl import app, flags

flags.DEFINE_multi_string("prompt", None, "a prompt (repeat for several)")
flags.DEFINE_string("prompts_file", None, "a text file with one prompt per line")
flags.DEFINE_string("checkpoint", None, "converted checkpoint directory (tools/convert.py)")
flags.DEFINE_string("config", None, "with --random_weights: the system config file (configs/*.py)")
flags.DEFINE_enum("preset", None, ["full", "tiny"], "with --random_weights: shorthand for --config configs/<preset>.py "
                  "(default: tiny)")
flags.DEFINE_bool("random_weights", False, "use RANDOM weights of --config (shows the code path; output is noise)")
flags.DEFINE_integer("seed", 42, "seed of every random draw")
flags.DEFINE_float("lm_guidance", 7.5, "LM classifier-free guidance scale")
flags.DEFINE_float("temperature", 1.0, "LM sampling temperature")
flags.DEFINE_integer("top_k", None, "LM top-k sampling")
flags.DEFINE_float("top_p", None, "LM nucleus sampling")
flags.DEFINE_bool("greedy", False, "LM argmax instead of sampling")
flags.DEFINE_float("motion_score", 0.1, "motion micro-condition of the LM")
flags.DEFINE_integer("num_frames", None, "video frames (1 + 8k; default: the model's maximum, 49 at full size)")
flags.DEFINE_integer("steps", None, "diffusion steps (default 50)")
flags.DEFINE_float("dit_guidance", None, "diffusion dynamic CFG scale (default 6)")
flags.DEFINE_float("dit_guidance_exp", None, "diffusion dynamic CFG exponent (default 5)")
flags.DEFINE_string("codes", None, "a .npy of semantic tokens ([N] or [b N]) to skip the LM")
flags.DEFINE_string("output_dir", "results", "where videos and codes are written")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype (default: bfloat16 on GPU, float32 on CPU)")
flags.DEFINE_enum("dit_attention", None, ["cudnn", "mosaic", "xla"],
                  "diffusion attention kernel (default: mosaic, our Hopper flash attention, for bf16 on one "
                  "H100/H200; cuDNN on other GPUs and on a mesh; XLA on CPU)")
FLAGS = flags.FLAGS


def read_prompts() -> list[str]:
    prompts = list(FLAGS.prompt or [])
    if FLAGS.prompts_file:
        path = Path(FLAGS.prompts_file)
        if not path.is_file():
            raise app.UsageError(f"prompts file not found: {path}")
        prompts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts and FLAGS.random_weights:
        prompts = ["A small red fox walks slowly across a quiet forest, cinematic lighting."]
    if not prompts:
        raise app.UsageError("give --prompt or --prompts_file")
    return prompts


def output_names(prompts: list[str]) -> list[str]:
    slug = lambda p: re.sub(r"[^a-z0-9]+", "_", p.lower()).strip("_")[:48] or "prompt"
    return [f"{i:03d}_{slug(p)}" for i, p in enumerate(prompts)]


def check_output_dir(directory: Path) -> None:
    import tempfile

    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as e:
        raise app.UsageError(f"output directory {directory} is not writable: {e}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax
    import numpy as np

    from landiff_jax.config import LanDiffConfig
    from landiff_jax.config_file import ConfigError
    from landiff_jax.convert.io import CheckpointError
    from landiff_jax.pipeline import GenerateOptions, LanDiff
    from landiff_jax.video_io import write_mp4, write_npy

    prompts = read_prompts()
    out_dir = Path(FLAGS.output_dir)
    check_output_dir(out_dir)
    dtype = FLAGS.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")
    if FLAGS.random_weights:
        if FLAGS.checkpoint:
            raise app.UsageError("--random_weights and --checkpoint exclude each other")
        try:
            cfg = LanDiffConfig.select(FLAGS.config, FLAGS.preset, default="tiny").with_dtype(dtype)
        except ConfigError as e:
            raise app.UsageError(str(e))
        source = FLAGS.config or FLAGS.preset or "tiny"
        print(f"WARNING: RANDOM weights ({source}): the video is noise, not a generation.")
        pipe = LanDiff.random(cfg, seed=FLAGS.seed, dit_attention=FLAGS.dit_attention)
    else:
        if not FLAGS.checkpoint:
            raise app.UsageError("give --checkpoint DIR (see tools/convert.py), or --random_weights")
        if FLAGS.config or FLAGS.preset:
            raise app.UsageError("a converted checkpoint carries its config; "
                                 "--config/--preset go with --random_weights")
        if not Path(FLAGS.checkpoint).is_dir():
            raise app.UsageError(f"checkpoint directory not found: {FLAGS.checkpoint}")
        from landiff_jax.checkpoint import load_config

        try:  # settings are checked against the config before the weights are loaded
            load_config(FLAGS.checkpoint).latent_frames(FLAGS.num_frames)
        except (ValueError, CheckpointError) as e:
            raise app.UsageError(str(e))
        print(f"loading {FLAGS.checkpoint} ({dtype})")
        pipe = LanDiff.from_checkpoint(FLAGS.checkpoint, dtype=dtype, dit_attention=FLAGS.dit_attention)
    options = GenerateOptions(
        seed=FLAGS.seed, num_frames=FLAGS.num_frames, lm_guidance=FLAGS.lm_guidance, temperature=FLAGS.temperature,
        top_k=FLAGS.top_k, top_p=FLAGS.top_p, greedy=FLAGS.greedy, motion_score=FLAGS.motion_score,
        steps=FLAGS.steps, dit_guidance=FLAGS.dit_guidance, dit_guidance_exp=FLAGS.dit_guidance_exp)
    codes = None
    if FLAGS.codes:
        codes = np.load(FLAGS.codes)
        codes = codes.reshape(len(prompts), -1) if codes.ndim == 1 else codes
    try:
        result = pipe.generate(prompts, options, codes=codes, progress=lambda s: print(s, flush=True))
    except ValueError as e:
        raise app.UsageError(str(e))
    for name, video, prompt_codes in zip(output_names(prompts), result.video, result.codes):
        write_npy(out_dir / f"{name}.npy", prompt_codes)
        path = write_mp4(out_dir / f"{name}.mp4", video, fps=8)
        print(f"wrote {path} ({video.shape[0]} frames, {video.shape[1]}x{video.shape[2]})")


if __name__ == "__main__":
    app.run(main)
