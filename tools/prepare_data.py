"""Write training datasets (ArrayRecord shards + dataset.json) that `tools/train.py` reads.

Videos with captions → one dataset per stage (OUT/tokenizer, OUT/diffusion, OUT/lm) plus
OUT/report.json (bad clips, cut captions), through the frozen models of a converted checkpoint:

  python tools/prepare_data.py --source videos --list clips.jsonl --checkpoint ckpts/landiff-jax \\
      --stages tokenizer,diffusion,lm --codes --out data/videos

The list is jsonl: {"path": ..., "caption": ..., "motion_score": ... (optional)}. Videos are decoded
by ffmpeg (imageio-ffmpeg's binary): 8 fps, centre-cropped, resized to the model's size, first --num_frames.
The synthetic world's clips, with random weights (tests, or the tiny system before any training):

  python tools/prepare_data.py --source synthetic_videos --num_examples 64 --random_weights \\
      --preset tiny --stages tokenizer,diffusion,lm --codes --out data/synthetic_tiny

LM examples of a small learnable world (no video, no model; OUT is the lm dataset itself):

  python tools/prepare_data.py --source synthetic_lm --stages lm --num_examples 256 --out data/lm_tiny

Resumable: run the same command again after an interruption; complete shards are kept and the
interrupted one is redone. A dataset.json appears only once all its shards are complete.
"""

import json
import sys
import time
from pathlib import Path

from absl import flags  # noqa: E402

from landiff_jax import cli, video_io  # noqa: E402

STAGES = ("tokenizer", "diffusion", "lm")
VIDEO_SOURCES = ("videos", "synthetic_videos")
flags.DEFINE_enum("source", None, ["synthetic_lm", *VIDEO_SOURCES], "where the examples come from", required=True)
flags.DEFINE_list("stages", None, f"stages to write examples of, from {','.join(STAGES)}", required=True)
flags.DEFINE_string("out", None, "output directory (new, or an unfinished one of the same settings)", required=True)
flags.DEFINE_integer("num_examples", None, "examples (synthetic sources)")
flags.DEFINE_integer("examples_per_shard", 1000, "examples per shard file")
flags.DEFINE_integer("seed", 0, "seed of the synthetic sources")
# synthetic_lm
flags.DEFINE_enum("lm_preset", "tiny", ["tiny", "full"],
                  "synthetic_lm: LM sizes (codebook, frame layout, text dim) of the examples")
flags.DEFINE_integer("frames", None,
                     "synthetic_lm: semantic frames per clip (default: one group, the preset's segment_length)")
flags.DEFINE_integer("max_text", None, "Flan-T5 rows of an lm example (default: synthetic_lm 16 tiny, 256 full; "
                                       "video sources the DiT's text_length)")
# video sources
flags.DEFINE_string("list", None, "videos: jsonl list file of {path, caption, motion_score (optional)}")
flags.DEFINE_string("checkpoint", None, "converted checkpoint directory of the frozen models")
flags.DEFINE_bool("random_weights", False, "RANDOM frozen models of --preset instead of a checkpoint")
flags.DEFINE_enum("preset", "tiny", ["tiny", "full"], "sizes of the random models")
flags.DEFINE_integer("weights_seed", 0, "seed of the random models")
flags.DEFINE_string("dtype", None, "compute dtype of the models (default: the checkpoint's; float32 when random)")
flags.DEFINE_integer("num_frames", None, "video frames per clip, 1 + 4k (default: the model's maximum)")
flags.DEFINE_bool("codes", False, "also the tokenizer's codes (needed by --stages lm)")
flags.DEFINE_enum("diffusion_condition", None, ["codes", "features", "both"],
                  "semantic condition in diffusion examples (default: codes with --codes, else features)")
flags.DEFINE_bool("paraphrase", False, "synthetic_videos: training paraphrases instead of canonical captions")
flags.DEFINE_float("motion_score", 0.1, "motion score of synthetic clips and of listed ones without one")
flags.DEFINE_integer("batch_size", None, "clips per jitted model call, a multiple of the device count "
                     "(default: per device, 8 tiny clips or 1 full-size one: prepare.default_batch_size)")
flags.DEFINE_integer("decode_workers", 4, "videos decoded in parallel")
flags.DEFINE_bool("verbose", False, "show the storage libraries' INFO logs (orbax, tensorstore)")
FLAGS = flags.FLAGS
PROGRESS_SECONDS = 10.0  # a progress line at least this often inside large shards


def check_arguments():
    """The arguments' errors, found before anything heavy is imported."""
    stages = FLAGS.stages
    if not stages or any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
        raise ValueError(f"--stages must be distinct ones of {','.join(STAGES)}, got {','.join(stages)}")
    for name in ("num_examples", "examples_per_shard", "frames", "max_text", "num_frames", "batch_size",
                 "decode_workers"):
        if FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be >= 1, got {FLAGS[name].value}")
    cli.check_output_dir("--out", Path(FLAGS.out))
    if FLAGS.source == "synthetic_lm":
        if stages != ["lm"]:
            raise ValueError(f"--source synthetic_lm makes 'lm' examples only, not {','.join(stages)}")
        if FLAGS.num_examples is None:
            raise ValueError("--source synthetic_lm needs --num_examples")
        return
    if FLAGS.source == "videos":
        if FLAGS.list is None or FLAGS.num_examples is not None:
            raise ValueError("--source videos needs --list FILE (and takes no --num_examples: every usable clip)")
        if not Path(FLAGS.list).is_file():
            what = "a directory, not a file" if Path(FLAGS.list).is_dir() else "no such file"
            raise ValueError(f"--list {FLAGS.list}: {what}")
        video_io.ffmpeg_exe()  # decodes the clips
    elif FLAGS.num_examples is None:
        raise ValueError("--source synthetic_videos needs --num_examples")
    if (FLAGS.checkpoint is None) == (not FLAGS.random_weights):
        raise ValueError("give either --checkpoint DIR or --random_weights (with --preset)")
    if FLAGS.checkpoint is not None and not Path(FLAGS.checkpoint).is_dir():
        what = "a file, not a directory" if Path(FLAGS.checkpoint).is_file() else "no such directory"
        raise ValueError(f"--checkpoint {FLAGS.checkpoint}: {what}")
    condition = FLAGS.diffusion_condition or ("codes" if FLAGS.codes else "features")
    if not FLAGS.codes and ("lm" in stages or ("diffusion" in stages and condition != "features")):
        raise ValueError(f"--stages {','.join(stages)} with diffusion condition {condition!r} need the "
                         "tokenizer's codes: pass --codes")


def synthetic_lm():
    from landiff_jax.data import records
    from landiff_jax.data.sources import SyntheticLM, plan_dataset
    from landiff_jax.lm.config import LMConfig

    lm = LMConfig.tiny() if FLAGS.lm_preset == "tiny" else LMConfig.full()
    frames = lm.segment_length if FLAGS.frames is None else FLAGS.frames
    max_text = (16 if FLAGS.lm_preset == "tiny" else 256) if FLAGS.max_text is None else FLAGS.max_text
    source = SyntheticLM.for_lm(lm, frames=frames, max_text=max_text, seed=FLAGS.seed)
    info = plan_dataset(source, FLAGS.num_examples, FLAGS.examples_per_shard)
    start, done, shown = time.monotonic(), [0], [time.monotonic()]

    def on_example():
        done[0] += 1
        now = time.monotonic()
        if now - shown[0] >= PROGRESS_SECONDS:
            shown[0] = now
            print(f"... {done[0]} examples written, {done[0] / (now - start):.1f} examples/s", flush=True)

    def on_shard(shard, skipped):
        seconds = time.monotonic() - start
        rate = done[0] / seconds if seconds > 0 else 0.0
        state = "kept (complete)" if skipped else "written"
        print(f"{shard.file}: {state}; {shard.start + shard.num_examples}/{info.num_examples} examples, "
              f"{rate:.1f} examples/s", flush=True)

    records.write_dataset(FLAGS.out, info, source.examples, on_example, on_shard)
    print(f"{FLAGS.out}: {info.num_examples} lm examples in {len(info.shards)} shards "
          f"({done[0]} written in {time.monotonic() - start:.1f} s)")


def video_datasets():
    import jax

    from landiff_jax import checkpoint, config, prepare
    from landiff_jax.data import clips

    # the config first (cheap) to check the clip size, then the weights, then the clips
    if FLAGS.random_weights:
        cfg = config.LanDiffConfig.preset(FLAGS.preset)
    else:
        cfg = checkpoint.load_config(FLAGS.checkpoint)
    num_frames = cfg.video_frames(cfg.max_latent_frames) if FLAGS.num_frames is None else FLAGS.num_frames
    cfg.latent_frames(num_frames)  # ValueError naming the valid counts
    spec = clips.ClipSpec(num_frames, *cfg.video_size)
    if FLAGS.source == "videos":
        shown = [time.monotonic()]

        def progress(done, total):
            if time.monotonic() - shown[0] >= PROGRESS_SECONDS or done == total:
                shown[0] = time.monotonic()
                print(f"scanned {done}/{total} videos", flush=True)

        source, clip_report = clips.scan(FLAGS.list, spec, FLAGS.motion_score, FLAGS.decode_workers, progress)
    else:
        source = clips.SyntheticVideos(FLAGS.num_examples, FLAGS.seed, spec, FLAGS.paraphrase, FLAGS.motion_score)
        clip_report = None
    models = prepare.load_frozen_models(None if FLAGS.random_weights else FLAGS.checkpoint, preset=FLAGS.preset,
                                        seed=FLAGS.weights_seed, dtype=FLAGS.dtype)
    mesh = None
    if jax.device_count() > 1:
        from landiff_jax.parallel import make_mesh

        mesh = make_mesh()
    examples = prepare.StageExamples(
        source, models, tuple(FLAGS.stages), FLAGS.max_text or models.cfg.dit.text_length,
        FLAGS.batch_size or prepare.default_batch_size(spec, jax.device_count()),
        FLAGS.codes, FLAGS.diffusion_condition or ("codes" if FLAGS.codes else "features"), FLAGS.decode_workers,
        mesh)
    report = prepare.write_report(FLAGS.out, examples, clip_report)
    bad = report["clips"]["bad_counts"]
    cut = {stage: len(v) for stage, v in report["captions_truncated"].items() if v}
    print(f"{len(source)} usable clips; bad: {json.dumps(bad)}; captions cut: {json.dumps(cut)} "
          f"(see {Path(FLAGS.out) / prepare.REPORT_FILE})", flush=True)
    if len(source) == 0:
        raise prepare.PrepareError(f"no usable clips in {FLAGS.list}")
    start = time.monotonic()
    infos = prepare.write(examples, FLAGS.out, FLAGS.examples_per_shard,
                          lambda line: print(line, flush=True), PROGRESS_SECONDS)
    for info in infos:
        print(f"{Path(FLAGS.out) / info.stage}: {info.num_examples} {info.stage} examples in {len(info.shards)} shards")
    print(f"done in {time.monotonic() - start:.1f} s")


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    cli.quiet_libraries(FLAGS.verbose)
    try:
        check_arguments()
    except (ValueError, cli.UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from landiff_jax.convert.io import CheckpointError
    from landiff_jax.data.records import RecordError

    try:
        synthetic_lm() if FLAGS.source == "synthetic_lm" else video_datasets()
    except (RecordError, CheckpointError, ValueError, OSError) as e:  # PrepareError, ListError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume into {FLAGS.out}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    cli.run(main, compiles=True)
