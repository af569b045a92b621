"""Throughput of data preparation (`tools/prepare_data.py --source videos`): mp4 files decoded
at 8 fps, centre-cropped and resized, then Theia features, the VAE posterior, the tokenizer's
codes and both T5 embeddings, with RANDOM weights of the preset, in clips/s.

  python -m tools.bench.prepare --preset full --dtype bfloat16 --clips 96

The source is one ffmpeg test-pattern video (--source_size, --source_fps, --seconds) copied
--clips times. Three figures, one JSON line: the list scan (every video decoded once, as
prepare_data does before writing), decoding alone through the clip source's worker threads, and
the examples of every stage (decode in threads + the jitted models, the next batch launched
before the previous one is fetched) after the first batch, which carries the compile. With
them: the models' FLOPs per clip as XLA counts them (the VAE encoder's 3D convolutions are nearly
all of it at full size), the model TFLOP/s they make, and that as a share of the device's dense
bf16 peak (MFU).
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jax
from absl import app, flags

from landiff_jax import video_io
from landiff_jax.config import LanDiffConfig
from landiff_jax.train.metrics import peak_flops
from tools.bench.common import CompileClock, emit, peak_memory_gb

flags.DEFINE_enum("preset", "full", ["tiny", "full"], "model sizes")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "compute dtype")
flags.DEFINE_integer("clips", 96, "clips (copies of the source video)")
flags.DEFINE_integer("batch_size", None, "clips per jitted model call (default: prepare.default_batch_size)")
flags.DEFINE_integer("decode_workers", 16, "videos decoded in parallel")
flags.DEFINE_string("source_size", "720x1280", "height x width of the source video")
flags.DEFINE_integer("source_fps", 24, "frame rate of the source video")
flags.DEFINE_float("seconds", 7.0, "length of the source video")
FLAGS = flags.FLAGS


def make_videos(directory: Path, count: int) -> Path:
    """`count` copies of one test-pattern mp4 and their list file."""
    height, width = (int(v) for v in FLAGS.source_size.split("x"))
    first = directory / "clip_0000.mp4"
    subprocess.run([video_io.ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size={width}x{height}:rate={FLAGS.source_fps}", "-t", str(FLAGS.seconds),
                    "-pix_fmt", "yuv420p", str(first)], check=True)
    lines = []
    for i in range(count):
        path = directory / f"clip_{i:04d}.mp4"
        if i:
            shutil.copyfile(first, path)
        lines.append(f'{{"path": "{path.name}", "caption": "A test pattern with moving colour bars, clip {i}."}}')
    listing = directory / "clips.jsonl"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def main(argv):
    del argv
    from landiff_jax import prepare
    from landiff_jax.data import clips

    cfg = LanDiffConfig.preset(FLAGS.preset)
    spec = clips.ClipSpec(cfg.video_frames(cfg.max_latent_frames), *cfg.video_size)
    batch = FLAGS.batch_size or prepare.default_batch_size(spec, 1)
    if FLAGS.clips <= batch:
        raise app.UsageError(f"--clips {FLAGS.clips} leaves no clip after the first batch of {batch}: "
                             f"pass more than {batch} (the first batch carries the compile)")
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        listing = make_videos(Path(tmp), FLAGS.clips)
        start = time.perf_counter()
        source, _ = clips.scan(listing, spec, 0.1, FLAGS.decode_workers)
        scan_s = time.perf_counter() - start
        print(f"scan: {len(source)} clips in {scan_s:.1f} s", flush=True)

        start = time.perf_counter()
        for _ in clips.ordered_map(source.clip, range(len(source)), FLAGS.decode_workers, 16):
            pass
        decode_s = time.perf_counter() - start
        print(f"decode: {decode_s:.1f} s", flush=True)

        start = time.perf_counter()
        models = prepare.load_frozen_models(None, preset=FLAGS.preset, dtype=FLAGS.dtype)
        examples = prepare.StageExamples(source, models, ("tokenizer", "diffusion", "lm"), models.cfg.dit.text_length,
                                         batch, True, "codes", FLAGS.decode_workers)
        build_s = time.perf_counter() - start
        print(f"frozen models built: {build_s:.1f} s", flush=True)
        clock = CompileClock(announce=1.0)
        start, first_s = time.perf_counter(), None
        for done, _ in enumerate(examples.examples(0, len(source)), 1):
            print(f"clip {done}: {time.perf_counter() - start:.1f} s", flush=True)
            if done == batch:
                first_s, first_compile_s = time.perf_counter() - start, clock.seconds
                start = time.perf_counter()
        steady = len(source) - batch
        seconds = time.perf_counter() - start
        flops = examples.flops_per_batch()
    clips_per_s = steady / seconds
    model = {}
    if flops:
        tflops = clips_per_s * flops / batch / 1e12
        peak = peak_flops(jax.devices()[0].device_kind)
        model = {"tflop_per_clip": float(f"{flops / batch / 1e12:.3g}"), "model_tflops_per_s": float(f"{tflops:.3g}"),
                 "mfu": round(tflops * 1e12 / (jax.device_count() * peak), 4) if peak else None}
    emit({"stage": "prepare_data", "preset": FLAGS.preset, "dtype": FLAGS.dtype, "clips": len(source),
          "clip": f"{spec.num_frames}x{spec.height}x{spec.width}", "source": f"{FLAGS.source_size}@{FLAGS.source_fps}",
          "batch_size": batch, "decode_workers": FLAGS.decode_workers,
          "scan_clips_per_s": round(len(source) / scan_s, 2), "decode_clips_per_s": round(len(source) / decode_s, 2),
          "build_s": round(build_s, 1), "first_batch_s": round(first_s, 1),
          "first_batch_compile_s": round(first_compile_s, 1),
          "later_compile_s": round(clock.seconds - first_compile_s, 1),
          "clips_per_s": round(clips_per_s, 2), **model, "devices": jax.device_count(), **peak_memory_gb()})


if __name__ == "__main__":
    app.run(main)
