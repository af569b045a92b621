"""Generate videos from text prompts: prompt(s) → LM semantic tokens → latents → mp4 (8 fps).

  python tools/generate.py --checkpoint ckpts/landiff-jax --prompt "A red fox walks through snow."
  python tools/generate.py --config configs/tiny.py --random_weights   # no files: RANDOM weights
  (--preset tiny is the shorthand for --config configs/tiny.py)

Writes <output_dir>/<n>_<prompt>.mp4 and the semantic tokens as <n>_<prompt>.npy (reusable with
--codes to skip the LM); an existing pair is kept and the new one gets the next free name
<n>_<prompt>-1, -2, ... unless --overwrite. Every argument is checked before any weight is read.
Defaults follow the original CLI (LM cfg 7.5, motion score 0.1, seed 42, 50 diffusion steps,
dynamic CFG 6 / exp 5).
"""

import os
import re
import sys
from pathlib import Path

from absl import flags

from landiff_jax import cli

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
flags.DEFINE_bool("verbose", False, "show the storage libraries' INFO logs (orbax, tensorstore)")
flags.DEFINE_bool("overwrite", False, "replace existing <name>.mp4/.npy (default: write <name>-1, -2, ...)")
flags.DEFINE_enum("verify_checkpoint", "cheap", ["none", "cheap", "full"],
                  "checksums of the converted checkpoint: cheap = every file's size and the sha256 of files up to "
                  "64 MiB, full = the sha256 of every file")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype (default: bfloat16 on GPU, float32 on CPU)")
flags.DEFINE_enum("dit_attention", None, ["cudnn", "mosaic", "xla"],
                  "diffusion attention kernel (default: mosaic, our Hopper flash attention, for bf16 on one "
                  "H100/H200; cuDNN on other GPUs and on a mesh; XLA on CPU)")
FLAGS = flags.FLAGS


def read_prompts() -> list[str]:
    prompts = list(FLAGS.prompt or [])
    blank = [i for i, p in enumerate(prompts) if not p.strip()]
    if blank:
        raise cli.UsageError(f"--prompt number {blank[0] + 1} is empty")
    if FLAGS.prompts_file:
        path = Path(FLAGS.prompts_file)
        if not path.is_file():
            raise cli.UsageError(f"prompts file not found: {path}")
        try:
            lines = path.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise cli.UsageError(f"prompts file {path} is not UTF-8 text ({e.reason} at byte {e.start})")
        from_file = [line.strip() for line in lines if line.strip()]
        if not from_file:
            raise cli.UsageError(f"prompts file {path} has no prompts (one per line)")
        prompts += from_file
    if not prompts and FLAGS.random_weights:
        prompts = ["A small red fox walks slowly across a quiet forest, cinematic lighting."]
    if not prompts:
        raise cli.UsageError("give --prompt or --prompts_file")
    return prompts


def output_names(prompts: list[str]) -> list[str]:
    slug = lambda p: re.sub(r"[^a-z0-9]+", "_", p.lower()).strip("_")[:48] or "prompt"
    return [f"{i:03d}_{slug(p)}" for i, p in enumerate(prompts)]


def check_output_dir(directory: Path) -> None:
    """`directory` is (or can be made) a writable directory; nothing is created yet."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise cli.UsageError(f"--output_dir {directory}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise cli.UsageError(f"--output_dir {directory}: {existing} is not writable")


def read_codes(path: str):
    """The --codes file as an array (checked against the config by pipeline.check_codes)."""
    import numpy as np

    if not Path(path).is_file():
        raise cli.UsageError(f"--codes file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise cli.UsageError(f"--codes {path} is not a .npy array file ({str(e).splitlines()[0]})")


def check_arguments():
    """Every flag, before any weight is read: (prompts, config, options, codes or None)."""
    from landiff_jax import runtime
    from landiff_jax.checkpoint import load_config
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.config_file import ConfigError
    from landiff_jax.convert.io import CheckpointError
    from landiff_jax.pipeline import GenerateOptions, check_codes, check_options

    prompts = read_prompts()
    check_output_dir(Path(FLAGS.output_dir))
    dtype = compute_dtype()
    if FLAGS.random_weights:
        if FLAGS.checkpoint:
            raise cli.UsageError("--random_weights and --checkpoint exclude each other")
        try:
            cfg = LanDiffConfig.select(FLAGS.config, FLAGS.preset, default="tiny")
        except ConfigError as e:
            raise cli.UsageError(str(e))
    else:
        if not FLAGS.checkpoint:
            raise cli.UsageError("give --checkpoint DIR (see tools/convert.py), or --random_weights")
        if FLAGS.config or FLAGS.preset:
            raise cli.UsageError("a converted checkpoint carries its config; "
                                 "--config/--preset go with --random_weights")
        if not Path(FLAGS.checkpoint).is_dir():
            raise cli.UsageError(f"checkpoint directory not found: {FLAGS.checkpoint}")
        try:
            cfg = load_config(FLAGS.checkpoint)
        except CheckpointError as e:
            raise cli.UsageError(str(e))
    options = GenerateOptions(
        seed=FLAGS.seed, num_frames=FLAGS.num_frames, lm_guidance=FLAGS.lm_guidance, temperature=FLAGS.temperature,
        top_k=FLAGS.top_k, top_p=FLAGS.top_p, greedy=FLAGS.greedy, motion_score=FLAGS.motion_score,
        steps=FLAGS.steps, dit_guidance=FLAGS.dit_guidance, dit_guidance_exp=FLAGS.dit_guidance_exp)
    try:
        cfg = cfg.with_dtype(dtype)
        latent_frames = check_options(cfg, options)
        runtime.configure(cfg, dit_attention=FLAGS.dit_attention)  # the kernel choice against the devices
        codes = None
        if FLAGS.codes:
            codes = read_codes(FLAGS.codes)
            if codes.ndim == 1 and len(prompts) == 1:
                codes = codes[None]
            codes = check_codes(cfg, codes, latent_frames, len(prompts))
    except ValueError as e:
        raise cli.UsageError(str(e))
    return prompts, cfg, options, codes


def compute_dtype() -> str:
    import jax

    return FLAGS.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_libraries(FLAGS.verbose)
    prompts, cfg, options, codes = check_arguments()
    from landiff_jax import checkpoint
    from landiff_jax.pipeline import LanDiff
    from landiff_jax.video_io import write_video_and_codes

    out_dir = Path(FLAGS.output_dir)
    if FLAGS.random_weights:
        source = FLAGS.config or FLAGS.preset or "tiny"
        print(f"WARNING: RANDOM weights ({source}): the video is noise, not a generation.")
        pipe = LanDiff.random(cfg, seed=FLAGS.seed, dit_attention=FLAGS.dit_attention)
    else:
        if FLAGS.verify_checkpoint == "full":
            print(f"verifying every checksum of {FLAGS.checkpoint}")
            checkpoint.verify(FLAGS.checkpoint, "full")
        elif FLAGS.verify_checkpoint == "cheap":
            checkpoint.verify(FLAGS.checkpoint, "cheap", components=())  # the text tokenizers; params at load
        print(f"loading {FLAGS.checkpoint} ({compute_dtype()})")
        pipe = LanDiff.from_checkpoint(FLAGS.checkpoint, dtype=compute_dtype(), dit_attention=FLAGS.dit_attention,
                                       verify="none" if FLAGS.verify_checkpoint == "full" else FLAGS.verify_checkpoint)
    try:
        result = pipe.generate(prompts, options, codes=codes, progress=lambda s: print(s, flush=True))
    except ValueError as e:
        raise cli.UsageError(str(e))
    refused = 0
    for name, video, prompt_codes in zip(output_names(prompts), result.video, result.codes):
        try:
            path, _ = write_video_and_codes(out_dir, name, video, prompt_codes, fps=8, overwrite=FLAGS.overwrite)
        except ValueError as e:  # a non-finite video: the others are still written
            print(f"generate.py: error: {name}: {e}", file=sys.stderr)
            refused += 1
            continue
        print(f"wrote {path} ({video.shape[0]} frames, {video.shape[1]}x{video.shape[2]})")
    return 1 if refused else 0


if __name__ == "__main__":
    cli.run(main)
