"""Generate videos from text prompts: prompt(s) → LM semantic tokens → latents → mp4 (8 fps).

  python tools/generate.py --prompt "a blue square moves up on a white background"   # shipped checkpoints/tiny
  python tools/generate.py --checkpoint ckpts/landiff-jax --prompt "A red fox walks through snow."
  python tools/generate.py --config configs/tiny.py --random_weights   # no files: RANDOM weights
  (--preset tiny is the shorthand for --config configs/tiny.py)

Without --checkpoint or --random_weights: the shipped tiny checkpoint (checkpoints/tiny), or RANDOM
tiny weights in a checkout without it (`cli.choose_model`, shared with tools/demo.py).

Writes <output_dir>/<n>_<prompt>.mp4 and the semantic tokens as <n>_<prompt>.npy (reusable with
--codes to skip the LM); an existing pair is kept and the new one gets the next free name
<n>_<prompt>-1, -2, ... unless --overwrite. Every argument is checked before any weight is read.
Longer videos than one chunk (--num_frames 97, 145, 193, ... at full size; 17, 25, 33, ... tiny)
are generated and encoded chunk by chunk (frames go to the mp4 as each chunk is decoded); a video
appears at its name only once complete.
Defaults follow the original CLI (LM cfg 7.5, motion score 0.1, seed 42); frames, steps and
diffusion guidance default to the chosen preset's or checkpoint's (`--help` with
--preset/--config/--checkpoint shows them).
"""

import argparse
import dataclasses
import hashlib
import re
import sys
import unicodedata
from pathlib import Path

from absl import flags

from landiff_jax import cli, video_io

flags.DEFINE_multi_string("prompt", None, "a prompt (repeat for several)")
flags.DEFINE_string("prompts_file", None, "a text file with one prompt per line")
cli.define_model_flags()
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
flags.DEFINE_float("dit_guidance_exp", None, "diffusion dynamic CFG exponent (0: every step at 1 + dit_guidance)")
flags.DEFINE_integer("lm_window", None, "long videos: LM groups the KV cache holds, a sliding window (default: "
                     "the whole sequence while it fits the LM's max_len)")
flags.DEFINE_integer("fps", 8, "frame rate of the written mp4 (LanDiff's videos are sampled at 8 fps)")
flags.DEFINE_bool("quiet", False, "no progress display (errors and the list of written files only)")
flags.DEFINE_string("codes", None, "a .npy of semantic tokens ([N] or [b N]) to skip the LM")
flags.DEFINE_string("output_dir", "results", "where videos and codes are written")
flags.DEFINE_bool("verbose", False, "show the storage libraries' INFO logs (orbax, tensorstore)")
flags.DEFINE_bool("overwrite", False, "replace existing <name>.mp4/.npy (default: write <name>-1, -2, ...)")
flags.DEFINE_enum("verify_checkpoint", "cheap", ["none", "cheap", "full"],
                  "checksums of the converted checkpoint: cheap = every file's size and the sha256 of files up to "
                  "64 MiB, full = the sha256 of every file")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype (default: bfloat16 on GPU, float32 on CPU)")
flags.DEFINE_enum("dit_attention", None, ["cudnn", "mosaic", "xla"],
                  "diffusion attention kernel (default: mosaic, our Hopper flash attention, for bf16 on "
                  "H100/H200; cuDNN on other GPUs; XLA on CPU)")
FLAGS = flags.FLAGS


def read_prompts(random_weights: bool) -> list[str]:
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
    if not prompts and random_weights:
        prompts = ["A small red fox walks slowly across a quiet forest, cinematic lighting."]
    if not prompts:
        raise cli.UsageError("give --prompt or --prompts_file")
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
    parser.add_argument("--random_weights", "-random_weights", nargs="?", const="true", default="false")
    known, _ = parser.parse_known_args(argv[1:])
    try:
        choice = cli.choose_model(known.checkpoint, known.config, known.preset,
                                  known.random_weights.lower() in ("true", "t", "1"))
        cfg, source = choice.cfg, choice.source
    except Exception:  # noqa: BLE001 (help only: the run reports the error itself)
        cfg, source = None, None
    texts = {name: FLAGS[name].help for name in ("num_frames", "steps", "dit_guidance", "dit_guidance_exp")}
    if cfg is None:
        for name, text in texts.items():
            FLAGS[name].help = f"{text} (default: the config's; --help with --preset/--checkpoint shows it)"
        return
    from landiff_jax.pipeline import config_defaults

    defaults = config_defaults(cfg)
    FLAGS["num_frames"].help = (f"video frames, one of {cfg.valid_video_frames()} or, chunk by chunk, "
                                f"{', '.join(map(str, cfg.streamed_frames()))}, ... "
                                f"(default for {source}: {defaults['num_frames']})")
    for name in ("steps", "dit_guidance", "dit_guidance_exp"):
        FLAGS[name].help = f"{texts[name]} (default for {source}: {defaults[name]:g})"


def header(cfg, source: str, options, dtype: str, prompts: list[str]) -> str:
    """The run's settings, defaults resolved from the config."""
    import jax

    t = cfg.latent_frames(options.num_frames, streaming=True)
    h, w = cfg.video_size
    sampler = cfg.sampler
    steps = options.steps or sampler.num_steps
    guidance = options.dit_guidance if options.dit_guidance is not None else sampler.cfg_scale
    exp = options.dit_guidance_exp if options.dit_guidance_exp is not None else sampler.cfg_exp
    lm = "greedy" if options.greedy else f"temperature {options.temperature:g}" + (
        f", top-k {options.top_k}" if options.top_k else "") + (f", top-p {options.top_p:g}" if options.top_p else "")
    device = jax.devices()[0]
    chunks = len(cfg.stream_chunks(t)) if t > cfg.max_latent_frames else 1
    return "\n".join([
        f"LanDiff ({source}) · {len(prompts)} prompt(s) · {cfg.video_frames(t)} frames of {w}×{h} at {FLAGS.fps} fps"
        + (f" in {chunks} chunks" if chunks > 1 else ""),
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
    """Every flag, before any weight is read: (prompts, model choice with the compute dtype's
    config, options, codes or None)."""
    from landiff_jax import runtime
    from landiff_jax.pipeline import GenerateOptions, check_codes, check_options

    choice = cli.choose_model(FLAGS.checkpoint, FLAGS.config, FLAGS.preset, FLAGS.random_weights)
    prompts = read_prompts(choice.checkpoint is None)
    if FLAGS.fps < 1:
        raise cli.UsageError(f"--fps must be >= 1, got {FLAGS.fps}")
    cli.check_output_dir("--output_dir", Path(FLAGS.output_dir))
    video_io.ffmpeg_exe()  # the encoder exists before anything is generated
    cfg = choice.cfg
    options = GenerateOptions(
        seed=FLAGS.seed, num_frames=FLAGS.num_frames, lm_guidance=FLAGS.lm_guidance, temperature=FLAGS.temperature,
        top_k=FLAGS.top_k, top_p=FLAGS.top_p, greedy=FLAGS.greedy, motion_score=FLAGS.motion_score,
        steps=FLAGS.steps, dit_guidance=FLAGS.dit_guidance, dit_guidance_exp=FLAGS.dit_guidance_exp,
        lm_window=FLAGS.lm_window)
    try:
        cfg = cfg.with_dtype(cli.compute_dtype(FLAGS.dtype))
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
    return prompts, dataclasses.replace(choice, cfg=cfg), options, codes


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_libraries(FLAGS.verbose)
    prompts, choice, options, codes = check_arguments()
    from landiff_jax.files import remove_stale_temporaries
    from landiff_jax.pipeline import CompileFor, check_options, weight_bytes
    from landiff_jax.progress import Display

    out_dir = Path(FLAGS.output_dir)
    for stale in remove_stale_temporaries(out_dir, (".mp4", ".npy")):
        print(f"removed {stale} (left by an interrupted run)")
    dtype = cli.compute_dtype(FLAGS.dtype)
    if choice.warning:
        print(f"WARNING: {choice.warning}")
    print(header(choice.cfg, choice.source, options, dtype, prompts), flush=True)
    one_chunk = check_options(choice.cfg, options) <= choice.cfg.max_latent_frames  # (a long video compiles per chunk)
    plan = CompileFor(prompts, options, progress=not FLAGS.quiet, codes=codes is not None) if one_chunk else None
    pipe = cli.load_model(choice, dtype, seed=FLAGS.seed, dit_attention=FLAGS.dit_attention,
                          verify=FLAGS.verify_checkpoint, compile_for=plan)
    if pipe.restore_seconds is not None and not FLAGS.quiet:
        size = weight_bytes(pipe.cfg) / 1e9
        compiled = "" if pipe.compile_seconds is None else f"; compiled ahead in {pipe.compile_seconds:.1f} s"
        print(f"restored {size:.2f} GB of weights in {pipe.restore_seconds:.1f} s "
              f"({size / max(pipe.restore_seconds, 1e-9):.2f} GB/s) after {pipe.checks_seconds:.1f} s of checks"
              f"{compiled}", flush=True)
    try:
        chunks = pipe.generate_stream(prompts, options, codes=codes, progress=None if FLAGS.quiet else Display())
    except ValueError as e:
        raise cli.UsageError(str(e))
    written, refused = write_videos(chunks, output_names(prompts), out_dir)
    print(summary(written))
    return 1 if refused else 0


def write_videos(chunks, names: list[str], out_dir: Path) -> tuple[list[tuple[Path, str]], int]:
    """Each prompt's mp4 encoded as the chunks arrive, then committed with its codes; a prompt
    whose frames turn non-finite gets nothing written (the others still do). An interruption
    leaves no video at any final name. → (written files with their shapes, videos refused)."""
    import numpy as np

    from landiff_jax.video_io import Mp4Stream, commit_with_codes, video_paths

    paths = [video_paths(out_dir, name, FLAGS.overwrite) for name in names]
    streams = [Mp4Stream(mp4, fps=FLAGS.fps) for mp4, _ in paths]
    codes, finite = [[] for _ in names], [True] * len(names)
    written = []
    try:
        for chunk in chunks:
            for i, stream in enumerate(streams):
                if finite[i] and not chunk.finite[i]:
                    finite[i] = False
                    stream.abort()
                    print(f"generate.py: error: {names[i]}: the video holds non-finite values (NaN/inf); not written",
                          file=sys.stderr)
                if finite[i]:
                    stream.write(chunk.frames[i])
                    codes[i].append(chunk.codes[i])
        for (mp4, npy), stream, prompt_codes, ok in zip(paths, streams, codes, finite):
            if ok:
                prompt_codes = np.concatenate(prompt_codes)
                commit_with_codes(stream.finish(), mp4, npy, prompt_codes)
                h, w = stream.size
                written += [(mp4, f"{w}×{h}×{stream.frames} (width×height×frames)"),
                            (npy, f"{prompt_codes.shape[0]} semantic tokens")]
    finally:
        for stream in streams:
            stream.abort()  # stops and removes what an interruption left (nothing once committed)
    return written, finite.count(False)


if __name__ == "__main__":
    help_defaults(sys.argv)
    cli.run(main, compiles=True)
