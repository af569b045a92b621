"""Write a training dataset (ArrayRecord shards + dataset.json) that `tools/train.py` reads.

  python tools/prepare_data.py --stage lm --source synthetic --num_examples 256 --out data/lm_tiny

Resumable: run the same command again after an interruption; complete shards are kept and the
interrupted one is redone. dataset.json appears only once every shard is complete.
Sources: `synthetic` (LM examples of a small learnable world, sized by --lm_preset, --frames and
--max_text, so that the LM trains before any video is prepared).
"""

import sys
import time

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("stage", None, ["lm", "tokenizer", "diffusion"], "which stage's examples to write", required=True)
flags.DEFINE_enum("source", "synthetic", ["synthetic"], "where the examples come from")
flags.DEFINE_integer("num_examples", None, "examples to write", required=True)
flags.DEFINE_string("out", None, "dataset directory (new, or an unfinished one of the same settings)", required=True)
flags.DEFINE_integer("examples_per_shard", 1000, "examples per shard file")
flags.DEFINE_integer("seed", 0, "seed of the synthetic source")
flags.DEFINE_enum("lm_preset", "tiny", ["tiny", "full"],
                  "LM sizes (codebook, frame layout, text dim) of synthetic examples")
flags.DEFINE_integer("frames", None,
                     "semantic frames per synthetic clip (default: one group, the preset's segment_length)")
flags.DEFINE_integer("max_text", None, "text rows per synthetic example (default 16 tiny, 256 full)")
FLAGS = flags.FLAGS
PROGRESS_SECONDS = 10.0  # a progress line at least this often inside large shards


def check_arguments():
    """The arguments' errors, found before anything heavy is imported."""
    if FLAGS.stage != "lm":
        raise ValueError(f"--source {FLAGS.source} has no {FLAGS.stage!r} examples (it makes 'lm' examples; "
                         "video sources come with the tokenizer's data preparation)")
    for name in ("num_examples", "examples_per_shard", "frames", "max_text"):
        if FLAGS[name].value is not None and FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be >= 1, got {FLAGS[name].value}")


def make_source():
    from landiff_jax.data.sources import SyntheticLM
    from landiff_jax.lm.config import LMConfig

    lm = LMConfig.tiny() if FLAGS.lm_preset == "tiny" else LMConfig.full()
    frames = lm.segment_length if FLAGS.frames is None else FLAGS.frames
    max_text = (16 if FLAGS.lm_preset == "tiny" else 256) if FLAGS.max_text is None else FLAGS.max_text
    return SyntheticLM.for_lm(lm, frames=frames, max_text=max_text, seed=FLAGS.seed)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        check_arguments()
        from landiff_jax.data import records
        from landiff_jax.data.sources import plan_dataset

        source = make_source()
        info = plan_dataset(source, FLAGS.num_examples, FLAGS.examples_per_shard)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

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

    try:
        records.write_dataset(FLAGS.out, info, source.examples, on_example, on_shard)
    except (records.RecordError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume into {FLAGS.out}", file=sys.stderr)
        return 130
    print(f"{FLAGS.out}: {info.num_examples} {FLAGS.stage} examples in {len(info.shards)} shards "
          f"({done[0]} written in {time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    app.run(main)
