"""Generate videos from text prompts: prompt(s) → LM semantic tokens → latents → mp4 (8 fps).

  python tools/generate.py --checkpoint ckpts/landiff-jax --prompt "A red fox walks through snow."
  python tools/generate.py --config configs/tiny.py --random_weights   # no files: RANDOM weights
  (--preset tiny is the shorthand for --config configs/tiny.py)

Writes <output_dir>/<n>_<prompt>.mp4 and the semantic tokens as <n>_<prompt>.npy (reusable with
--codes to skip the LM). Defaults follow the original CLI (LM cfg 7.5, motion score 0.1, seed 42);
frames, steps and diffusion guidance default to the chosen preset's or checkpoint's (`--help`
with --preset/--config/--checkpoint shows them).
"""

import argparse
import hashlib
import re
import sys
import unicodedata
from pathlib import Path

from absl import app, flags, logging

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
# help texts of the settings whose defaults come from the config (filled in by `help_defaults`)
flags.DEFINE_integer("num_frames", None, "video frames")
flags.DEFINE_integer("steps", None, "diffusion steps")
flags.DEFINE_float("dit_guidance", None, "diffusion dynamic CFG scale")
flags.DEFINE_float("dit_guidance_exp", None, "diffusion dynamic CFG exponent")
flags.DEFINE_integer("fps", 8, "frame rate of the written mp4 (LanDiff's videos are sampled at 8 fps)")
flags.DEFINE_bool("quiet", False, "no progress display (errors and the list of written files only)")
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


def slug(prompt: str, limit: int = 48) -> str:
    """A file-name part: the prompt's words (accents dropped, lower case) joined by '_' and cut
    at a word boundary within `limit` characters; a prompt without Latin letters gets a short
    stable hash of its text."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    if not re.search(r"[a-z]", ascii_text):
        return hashlib.sha256(prompt.strip().encode()).hexdigest()[:10]
    name = words[0][:limit]
    for word in words[1:]:
        if len(name) + 1 + len(word) > limit:
            break
        name += "_" + word
    return name


def output_names(prompts: list[str]) -> list[str]:
    return [f"{i:03d}_{slug(p)}" for i, p in enumerate(prompts)]


def help_defaults(argv: list[str]) -> None:
    """Fill the help of the config-dependent flags with the defaults of the config that the
    command line chooses (--checkpoint, --config or --preset; tiny with --random_weights).
    Runs before absl parses argv, so that `--help` shows them; a config that cannot be read
    leaves the generic texts (the run itself reports why)."""
    parser = argparse.ArgumentParser(add_help=False, prefix_chars="-")
    for name in ("checkpoint", "config", "preset"):
        parser.add_argument(f"--{name}", f"-{name}")
    known, _ = parser.parse_known_args(argv[1:])
    try:
        cfg, source = chosen_config(known.checkpoint, known.config, known.preset)
    except Exception:  # noqa: BLE001 (help only: the run reports the error itself)
        cfg, source = None, None
    texts = {"num_frames": "video frames", "steps": "diffusion steps",
             "dit_guidance": "diffusion dynamic CFG scale", "dit_guidance_exp": "diffusion dynamic CFG exponent"}
    if cfg is None:
        for name, text in texts.items():
            FLAGS[name].help = f"{text} (default: the config's; --help with --preset/--checkpoint shows it)"
        return
    defaults = config_defaults(cfg)
    FLAGS["num_frames"].help = (f"video frames, one of {valid_frames(cfg)} "
                                f"(default for {source}: {defaults['num_frames']})")
    for name in ("steps", "dit_guidance", "dit_guidance_exp"):
        FLAGS[name].help = f"{texts[name]} (default for {source}: {defaults[name]:g})"


def chosen_config(checkpoint, config, preset):
    """(LanDiffConfig, where it comes from) as the flags choose it (checkpoint, else config/preset)."""
    from landiff_jax.config import LanDiffConfig

    if checkpoint:
        from landiff_jax.checkpoint import load_config

        return load_config(checkpoint), checkpoint
    return LanDiffConfig.select(config, preset, default="tiny"), config or preset or "tiny"


def valid_frames(cfg) -> list[int]:
    return [cfg.video_frames(t) for t in range(3, cfg.max_latent_frames + 1, 2)]


def config_defaults(cfg) -> dict:
    s = cfg.sampler
    return dict(num_frames=cfg.video_frames(cfg.max_latent_frames), steps=s.num_steps, dit_guidance=s.cfg_scale,
                dit_guidance_exp=s.cfg_exp)


def header(cfg, source: str, options, dtype: str, prompts: list[str]) -> str:
    """The run's settings, defaults resolved from the config."""
    import jax

    t = cfg.latent_frames(options.num_frames)
    h, w = cfg.video_size
    sampler = cfg.sampler
    steps = options.steps or sampler.num_steps
    guidance = options.dit_guidance if options.dit_guidance is not None else sampler.cfg_scale
    exp = options.dit_guidance_exp if options.dit_guidance_exp is not None else sampler.cfg_exp
    lm = "greedy" if options.greedy else f"temperature {options.temperature:g}" + (
        f", top-k {options.top_k}" if options.top_k else "") + (f", top-p {options.top_p:g}" if options.top_p else "")
    device = jax.devices()[0]
    return "\n".join([
        f"LanDiff ({source}) · {len(prompts)} prompt(s) · {cfg.video_frames(t)} frames of {w}×{h} at {FLAGS.fps} fps",
        f"  LM: guidance {options.lm_guidance:g}, {lm}, motion score {options.motion_score:g} · seed {options.seed}",
        f"  diffusion: {steps} steps, dynamic CFG {guidance:g} / exp {exp:g}",
        f"  {dtype} on {len(jax.devices())}× {device.device_kind} ({device.platform})",
    ])


def summary(written: list[tuple[Path, str]]) -> str:
    lines = [f"wrote {len(written)} file(s):"]
    for path, shape in written:
        size = path.stat().st_size
        human = (f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} KB" if size >= 2**10
                 else f"{size} B")
        lines.append(f"  {path}  {shape}  {human}")
    return "\n".join(lines)


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
    from landiff_jax.progress import Display
    from landiff_jax.video_io import write_mp4, write_npy

    if not FLAGS["verbosity"].present:  # absl's INFO lines (JAX probing for a TPU, orbax) are not for users
        logging.set_verbosity(logging.WARNING)
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
            cfg = load_config(FLAGS.checkpoint, dtype)
            cfg.latent_frames(FLAGS.num_frames)
        except (ValueError, CheckpointError) as e:
            raise app.UsageError(str(e))
        source = FLAGS.checkpoint
    options = GenerateOptions(
        seed=FLAGS.seed, num_frames=FLAGS.num_frames, lm_guidance=FLAGS.lm_guidance, temperature=FLAGS.temperature,
        top_k=FLAGS.top_k, top_p=FLAGS.top_p, greedy=FLAGS.greedy, motion_score=FLAGS.motion_score,
        steps=FLAGS.steps, dit_guidance=FLAGS.dit_guidance, dit_guidance_exp=FLAGS.dit_guidance_exp)
    try:
        print(header(cfg, source, options, dtype, prompts), flush=True)
        if FLAGS.random_weights:
            pipe = LanDiff.random(cfg, seed=FLAGS.seed, dit_attention=FLAGS.dit_attention)
        else:
            print(f"loading {FLAGS.checkpoint}", flush=True)
            pipe = LanDiff.from_checkpoint(FLAGS.checkpoint, dtype=dtype, dit_attention=FLAGS.dit_attention)
    except ValueError as e:  # e.g. too little device memory for the weights (checked before building)
        raise app.UsageError(str(e))
    codes = None
    if FLAGS.codes:
        codes = np.load(FLAGS.codes)
        codes = codes.reshape(len(prompts), -1) if codes.ndim == 1 else codes
    try:
        result = pipe.generate(prompts, options, codes=codes, progress=None if FLAGS.quiet else Display())
    except ValueError as e:
        raise app.UsageError(str(e))
    written = []
    for name, video, prompt_codes in zip(output_names(prompts), result.videos, result.codes):
        written.append((write_mp4(out_dir / f"{name}.mp4", video, fps=FLAGS.fps),
                        f"{video.shape[2]}×{video.shape[1]}×{video.shape[0]} (width×height×frames)"))
        written.append((write_npy(out_dir / f"{name}.npy", prompt_codes), f"{prompt_codes.shape[0]} semantic tokens"))
    print(summary(written))


if __name__ == "__main__":
    help_defaults(sys.argv)
    app.run(main)
