"""Reconstruct a video through the semantic tokens: the paper's tokenizer evaluation.

  python tools/reconstruct.py clip.mp4 --checkpoint ckpts/landiff-jax [--caption "A red fox ..."]
  python tools/reconstruct.py clip.mp4 --config configs/tiny.py --random_weights   # RANDOM weights

video → frames at 8 fps, centre-cropped and resized to the model's size, as prepare_data decodes them
→ Theia features of the semantic frames → the tokenizer's codes (as prepare_data computes them) →
the control DiT conditioned on those codes and on the caption (without --caption: the null text,
the all-zero context of a caption dropped in training) → VAE → video. Writes
<video>_reconstruction.mp4 beside the input: input | reconstruction, side by side. Prints the
feature-space reconstruction error: MSE and cosine similarity between the Theia features and the
tokenizer's own decoding of the codes (the semantic information the tokens keep).
"""

import os
import sys
from pathlib import Path

from absl import flags

from landiff_jax import cli, video_io

cli.define_model_flags("converted checkpoint directory (tools/convert.py, tools/train_tiny.py); its tokenizer must "
                       "hold Theia's weights")
flags.DEFINE_string("caption", None, "the video's caption for the DiT (default: the null text)")
flags.DEFINE_integer("num_frames", None, "video frames reconstructed from the start of the video (default: the "
                     "model's maximum)")
flags.DEFINE_integer("seed", 42, "seed of the diffusion noise")
flags.DEFINE_integer("steps", None, "diffusion steps (default: the config's)")
flags.DEFINE_float("dit_guidance", None, "diffusion dynamic CFG scale (default: the config's)")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype (default: bfloat16 on GPU, float32 on CPU)")
flags.DEFINE_integer("fps", 8, "frame rate of the written mp4")
flags.DEFINE_bool("quiet", False, "no progress display")
flags.DEFINE_bool("verbose", False, "show the storage libraries' INFO logs (orbax, tensorstore)")
FLAGS = flags.FLAGS


def output_path(video: Path) -> Path:
    return video.with_name(f"{video.stem}_reconstruction.mp4")


def check_arguments(argv):
    """Every argument, before any weight is read: (video path, config, options); the config's
    dtype is still the stored one (choosing the compute dtype starts JAX's backend)."""
    if len(argv) != 2:
        raise cli.UsageError(f"give one video file, got {len(argv) - 1} argument(s)")
    video = Path(argv[1])
    if not video.is_file():
        raise cli.UsageError(f"video not found: {video}")
    if not os.access(video.parent, os.W_OK | os.X_OK):
        raise cli.UsageError(f"{video.parent} is not writable (the reconstruction is written beside the video)")
    if FLAGS.caption is not None and not FLAGS.caption.strip():
        raise cli.UsageError("--caption is empty (leave it out for the null text)")
    if FLAGS.fps < 1:
        raise cli.UsageError(f"--fps must be >= 1, got {FLAGS.fps}")
    video_io.ffmpeg_exe()  # decodes the video and encodes the reconstruction

    from landiff_jax.checkpoint import load_config
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.config_file import ConfigError
    from landiff_jax.convert.io import CheckpointError
    from landiff_jax.pipeline import GenerateOptions, check_options
    if FLAGS.random_weights:
        if FLAGS.checkpoint:
            raise cli.UsageError("--random_weights and --checkpoint exclude each other")
        try:
            cfg = LanDiffConfig.select(FLAGS.config, FLAGS.preset, default="tiny")
        except ConfigError as e:
            raise cli.UsageError(str(e))
    else:
        if not FLAGS.checkpoint:
            raise cli.UsageError("give --checkpoint DIR, or --random_weights")
        if FLAGS.config or FLAGS.preset:
            raise cli.UsageError("a converted checkpoint carries its config; --config/--preset go with "
                                 "--random_weights")
        if not Path(FLAGS.checkpoint).is_dir():
            raise cli.UsageError(f"checkpoint directory not found: {FLAGS.checkpoint}")
        try:
            cfg = load_config(FLAGS.checkpoint)
        except CheckpointError as e:
            raise cli.UsageError(str(e))
        if not holds_theia(FLAGS.checkpoint):
            raise cli.UsageError(f"{FLAGS.checkpoint}: its tokenizer holds no Theia weights ('feature_extractor'), "
                                 "which encoding a video needs: convert a release whose tokenizer file has them "
                                 "(feature_extractor.model.backbone.*)")
    if cfg.tokenizer.theia is None:
        raise cli.UsageError("the tokenizer's config has no Theia feature extractor: videos cannot be encoded")
    options = GenerateOptions(seed=FLAGS.seed, num_frames=FLAGS.num_frames, steps=FLAGS.steps,
                              dit_guidance=FLAGS.dit_guidance)
    try:
        check_options(cfg, options)
    except ValueError as e:
        raise cli.UsageError(str(e))
    return video, cfg, options


def holds_theia(checkpoint: str) -> bool:
    """Whether the checkpoint's tokenizer holds Theia's weights, from its metadata alone (True
    when that cannot be read: loading it then says what is wrong)."""
    from landiff_jax.checkpoint import stored_arrays

    try:
        return "feature_extractor" in stored_arrays(Path(checkpoint) / "params" / "tokenizer")
    except (ValueError, KeyError, OSError):  # missing, damaged
        return True


def compute_dtype() -> str:
    import jax

    return FLAGS.dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")


def read_video(path: Path, cfg, options):
    """The clip as prepare_data decodes it: uint8 [F H W 3] at 8 fps, centre-cropped and resized."""
    from landiff_jax.data import clips

    num_frames = cfg.video_frames(cfg.latent_frames(options.num_frames))
    try:
        return clips.decode_video(path, clips.ClipSpec(num_frames, *cfg.video_size))
    except clips.BadClip as e:
        hint = " (choose fewer with --num_frames)" if e.kind == "too_short" else ""
        raise cli.UsageError(f"{path}: {e.reason}{hint}")


def feature_errors(features, decoded) -> dict[str, float]:
    """MSE, and cosine similarity over channels averaged over every frame and position, of the
    decoded features [t h w c] against Theia's; the MSE relative to the features' variance."""
    import numpy as np

    x, y = np.asarray(features, np.float64), np.asarray(decoded, np.float64)
    mse = float(np.mean((x - y) ** 2))
    norms = np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1)
    cosine = float(np.mean(np.sum(x * y, axis=-1) / np.maximum(norms, 1e-12)))
    return {"mse": mse, "relative_mse": mse / max(float(np.var(x)), 1e-12), "cosine": cosine}


def main(argv):
    cli.quiet_libraries(FLAGS.verbose)  # (checking reads the tokenizer's metadata)
    video_path, cfg, options = check_arguments(argv)
    # decoded before JAX's backend starts (ffmpeg is a forked subprocess) and any weight is read
    frames = read_video(video_path, cfg, options)
    cfg = cfg.with_dtype(compute_dtype())

    import numpy as np

    from landiff_jax import prepare, tokenizer
    from landiff_jax.pipeline import LanDiff
    from landiff_jax.progress import Display
    from landiff_jax.video_io import write_mp4

    if FLAGS.random_weights:
        print(f"WARNING: RANDOM weights ({FLAGS.config or FLAGS.preset or 'tiny'}): the video is noise.")
        try:
            pipe = LanDiff.random(cfg, seed=FLAGS.seed, job="reconstruct")
        except ValueError as e:  # too little memory for the weights (checked before building)
            raise cli.UsageError(str(e))
    else:
        print(f"loading {FLAGS.checkpoint}", flush=True)
        try:
            pipe = LanDiff.from_checkpoint(FLAGS.checkpoint, dtype=compute_dtype(), job="reconstruct")
        except ValueError as e:
            raise cli.UsageError(str(e))
    cfg = pipe.cfg
    encoded = prepare.encode_batch({"tokenizer": pipe.params["tokenizer"]}, frames[None], None, None, None, cfg=cfg,
                                   outputs=prepare.Outputs(features=True, codes=True))
    features, codes = encoded["features"], encoded["codes"]  # [1 t h w c], [1 N]
    decoded = tokenizer.decode(pipe.params["tokenizer"], cfg.tokenizer, codes, num_frames=features.shape[1])
    errors = feature_errors(features[0], decoded[0])
    t, h, w, c = features.shape[1:]
    print(f"feature reconstruction ({t} frames × {h}×{w} positions × {c} channels, {codes.shape[1]} codes): "
          f"MSE {errors['mse']:.6g} ({errors['relative_mse']:.4g} of the features' variance), "
          f"cosine {errors['cosine']:.4f}", flush=True)
    try:
        result = pipe.generate(FLAGS.caption, options, codes=np.asarray(codes),
                               progress=None if FLAGS.quiet else Display())
    except ValueError as e:
        raise cli.UsageError(str(e))
    if not result.finite[0]:
        print("reconstruct.py: error: the reconstruction holds non-finite values (NaN/inf); not written",
              file=sys.stderr)
        return 1
    path = write_mp4(output_path(video_path), np.concatenate([frames, result.videos[0]], axis=2), fps=FLAGS.fps)
    print(f"wrote {path}  ({frames.shape[2]}×{frames.shape[1]} input | reconstruction, {frames.shape[0]} frames)")
    return 0


if __name__ == "__main__":
    cli.run(main, compiles=True)
