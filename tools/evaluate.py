"""How well a model follows synthetic-world prompts, measured from its videos' pixels alone.

  python tools/evaluate.py                                  # the shipped checkpoints/tiny, every prompt × 2 seeds
  python tools/evaluate.py --checkpoint DIR --subset 40 --subset_seed 1
  python tools/evaluate.py --ground_truth --subset 60       # the renderer's own clips: tests the evaluator

Each video is written as an mp4 and measured from the decoded mp4 frames (landiff_jax/data/measure.py):
background, object colour, motion and shape. Prints the accuracy of each attribute and the most
frequent confusions; writes <output_dir>/results.json (every sample's expected and measured
attributes), <output_dir>/contact_sheet.png (first, middle and last frame with the caption; failures
first) and the videos under <output_dir>/videos/.
"""

import json
import re
from pathlib import Path

from absl import app, flags

from landiff_jax import cli, video_io
from landiff_jax.cli import DEFAULT_CHECKPOINT

ATTRIBUTES = ("background", "colour", "motion", "shape")

flags.DEFINE_string("checkpoint", None, f"converted checkpoint directory (default: the shipped {DEFAULT_CHECKPOINT.parent.name}/{DEFAULT_CHECKPOINT.name})")
flags.DEFINE_bool("ground_truth", False, "measure the synthetic renderer's own clips instead of a model's videos")
flags.DEFINE_string("prompts_file", None, "a text file with one caption of the grammar per line (default: every combination)")
flags.DEFINE_integer("seeds", 2, "videos per prompt (seeds)")
flags.DEFINE_integer("subset", None, "evaluate only this many prompts, drawn at random")
flags.DEFINE_integer("subset_seed", 0, "seed of the --subset draw")
flags.DEFINE_integer("seed", 42, "base seed of the generation (or of the ground-truth clips)")
flags.DEFINE_integer("batch_size", 8, "prompts generated together")
flags.DEFINE_integer("num_frames", None, "video frames (default: the model's maximum; with --ground_truth: 9)")
flags.DEFINE_integer("steps", None, "diffusion steps (default: the checkpoint's)")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype (default: bfloat16 on GPU, float32 on CPU)")
flags.DEFINE_integer("height", 32, "with --ground_truth: frame height")
flags.DEFINE_integer("width", 48, "with --ground_truth: frame width")
flags.DEFINE_bool("degrade", False, "with --ground_truth: blur (3×3 box) and add noise (σ=10) as a decoder might")
flags.DEFINE_enum("pixel_format", "yuv444p", ["yuv444p", "yuv420p"],
                  "mp4 colour sampling of the measured videos: yuv444p keeps the colour at full resolution (at "
                  "32×48, yuv420p's half-resolution colour alone blurs a small circle into a square)")
flags.DEFINE_integer("sheet_samples", 32, "samples on the contact sheet")
flags.DEFINE_string("output_dir", "results/evaluate", "where results.json, contact_sheet.png and the videos go")
flags.DEFINE_bool("verbose", False, "show the storage libraries' INFO logs (orbax, tensorstore)")
FLAGS = flags.FLAGS


def read_prompts():
    """[(prompt, attributes)] from --prompts_file or the whole grammar, then --subset."""
    import numpy as np

    from landiff_jax.data.synthetic import all_prompts, parse_caption

    if FLAGS.prompts_file:
        path = Path(FLAGS.prompts_file)
        if not path.is_file():
            raise app.UsageError(f"prompts file not found: {path}")
        try:
            lines = path.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise app.UsageError(f"prompts file {path} is not UTF-8 text ({e.reason} at byte {e.start})")
        prompts = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    prompts.append((line.strip(), parse_caption(line)))
                except ValueError as e:
                    raise app.UsageError(f"{path}:{number}: {e}")
        if not prompts:
            raise app.UsageError(f"no prompts in {path}")
    else:
        prompts = [(p, parse_caption(p)) for p in all_prompts()]
    if FLAGS.subset is not None:
        if not 1 <= FLAGS.subset <= len(prompts):
            raise app.UsageError(f"--subset must be in [1, {len(prompts)}], got {FLAGS.subset}")
        chosen = np.random.default_rng(FLAGS.subset_seed).choice(len(prompts), FLAGS.subset, replace=False)
        prompts = [prompts[i] for i in sorted(chosen)]
    return prompts


def check_output_dir(out_dir: Path) -> None:
    """--output_dir, its videos/ and the files written in it can be made (nothing is made yet)."""
    cli.check_output_dir("--output_dir", out_dir, "videos")
    for name in ("results.json", "contact_sheet.png"):
        if (out_dir / name).is_dir():
            raise app.UsageError(f"--output_dir {out_dir}: {out_dir / name} is a directory, not a file")


def check_flags():
    video_io.ffmpeg_exe()  # the videos are measured after an mp4 round trip
    if FLAGS.seeds < 1 or FLAGS.batch_size < 1 or FLAGS.sheet_samples < 0:
        raise app.UsageError("--seeds and --batch_size must be ≥ 1, --sheet_samples ≥ 0")
    model_only = ("checkpoint", "steps", "dtype")
    gt_only = ("height", "width", "degrade")
    for name in model_only if FLAGS.ground_truth else gt_only:
        if FLAGS[name].present:
            raise app.UsageError(f"--{name} {'does not apply to' if FLAGS.ground_truth else 'needs'} --ground_truth")
    if FLAGS.ground_truth:
        from landiff_jax.data.synthetic import check_size

        try:
            check_size(FLAGS.num_frames or 9, FLAGS.height, FLAGS.width)
        except ValueError as e:
            raise app.UsageError(str(e))
    check_output_dir(Path(FLAGS.output_dir))


def load_model(prompts):
    """The pipeline of --checkpoint (default: the shipped tiny checkpoint) for `prompts`, checked before loading."""
    directory = Path(FLAGS.checkpoint) if FLAGS.checkpoint else DEFAULT_CHECKPOINT
    if not directory.is_dir():
        hint = "" if FLAGS.checkpoint else " (the shipped tiny checkpoint is not in this checkout; give --checkpoint DIR)"
        raise app.UsageError(f"checkpoint directory not found: {directory}{hint}")
    from landiff_jax.checkpoint import load_config
    from landiff_jax.convert.io import CheckpointError
    from landiff_jax.pipeline import GenerateOptions, LanDiff, check_options

    try:  # every seed of the batches (seed + batch number), the frames and steps against the config
        last_seed = FLAGS.seed + (FLAGS.seeds * len(prompts) - 1) // FLAGS.batch_size
        for seed in (FLAGS.seed, last_seed):
            check_options(load_config(directory), GenerateOptions(seed=seed, num_frames=FLAGS.num_frames,
                                                                  steps=FLAGS.steps))
    except (CheckpointError, ValueError) as e:
        raise app.UsageError(str(e))
    dtype = cli.compute_dtype(FLAGS.dtype)
    print(f"loading {directory} ({dtype})", flush=True)
    return LanDiff.from_checkpoint(directory, dtype=dtype)


def model_videos(pipe, prompts):
    """Yields (sample index, seed, video [F H W 3] uint8) for every prompt × seed, in batches."""
    from landiff_jax.pipeline import GenerateOptions

    samples = [(k, p) for k in range(FLAGS.seeds) for p in prompts]
    for b, start in enumerate(range(0, len(samples), FLAGS.batch_size)):
        batch = samples[start:start + FLAGS.batch_size]
        seed = FLAGS.seed + b  # one seed per batch: the rows draw different noise from it
        options = GenerateOptions(seed=seed, num_frames=FLAGS.num_frames, steps=FLAGS.steps)
        try:
            result = pipe.generate([p for _, (p, _) in batch], options)
        except ValueError as e:
            raise app.UsageError(str(e))
        print(f"generated {start + len(batch)}/{len(samples)}", flush=True)
        yield from ((start + i, seed, video) for i, video in enumerate(result.videos))


def ground_truth_videos(prompts):
    """Yields (sample index, seed, uint8 clip [T H W 3]) for every prompt × seed."""
    from landiff_jax.data.synthetic import render, simulate_decoder

    num_frames = FLAGS.num_frames or 9
    samples = [(k, a) for k in range(FLAGS.seeds) for _, a in prompts]
    for i, (k, attributes) in enumerate(samples):
        seed = (FLAGS.seed, k, i)
        frames = render(attributes, num_frames, FLAGS.height, FLAGS.width, seed)
        yield i, list(seed), simulate_decoder(frames, (*seed, 1)) if FLAGS.degrade else frames


def summarize(records):
    """Accuracy per attribute (and of all four) and confusion counts (expected → measured)."""
    from collections import Counter

    n = len(records)
    accuracy = {a: sum(r["correct"][a] for r in records) / n for a in ATTRIBUTES}
    accuracy["all"] = sum(all(r["correct"].values()) for r in records) / n
    confusion = {a: Counter(f"{r['expected'][a]} -> {r['measured'][a]}" for r in records if not r["correct"][a])
                 for a in ATTRIBUTES}
    return accuracy, {a: dict(c.most_common()) for a, c in confusion.items()}


def print_table(accuracy, confusion, n):
    print(f"\n{'attribute':<12}{'accuracy':>10}{'correct':>12}")
    for name, value in accuracy.items():
        print(f"{name:<12}{100 * value:>9.1f}%{round(value * n):>8d} / {n}")
    print("\nconfusions (expected -> measured: count)")
    for name, counts in confusion.items():
        text = ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:6]) or "none"
        print(f"  {name:<11}{text}")


def contact_sheet(records, videos):
    """uint8 [H W 3]: a grid of cells, each a sample's first, middle and last frame (`videos`: [3 H W 3]
    each), its caption and (in red when wrong) the measurement; failures first."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    order = sorted(range(len(records)), key=lambda i: all(records[i]["correct"].values()))[:FLAGS.sheet_samples]
    font = ImageFont.load_default()
    h, w = videos[order[0]].shape[1:3]
    scale = max(1, -(-64 // h))
    frame_w, gap, text_h, columns = w * scale, 4, 30, 3
    cell_w, cell_h = max(3 * frame_w + 2 * gap, 300), h * scale + text_h
    rows = -(-len(order) // columns)
    sheet = Image.new("RGB", (columns * (cell_w + gap) + gap, rows * (cell_h + gap) + gap), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for slot, i in enumerate(order):
        x0, y0 = gap + (slot % columns) * (cell_w + gap), gap + (slot // columns) * (cell_h + gap)
        for j, frame in enumerate(videos[i]):
            frame = np.repeat(np.repeat(frame, scale, 0), scale, 1)
            sheet.paste(Image.fromarray(frame), (x0 + j * (frame_w + gap), y0))
        r = records[i]
        draw.text((x0, y0 + h * scale + 2), f"{i}: {r['prompt']}", fill=(255, 255, 255), font=font)
        got = " / ".join(r["measured"][a] for a in ATTRIBUTES)
        ok = all(r["correct"].values())
        draw.text((x0, y0 + h * scale + 15), f"got: {got}", fill=(120, 220, 120) if ok else (255, 90, 90), font=font)
    return np.asarray(sheet)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_libraries(FLAGS.verbose)
    check_flags()
    import io

    from PIL import Image

    from landiff_jax.data.measure import measure
    from landiff_jax.video_io import read_mp4, to_uint8, write_bytes, write_mp4

    prompts = read_prompts()
    source = ground_truth_videos(prompts) if FLAGS.ground_truth else model_videos(load_model(prompts), prompts)
    out_dir = Path(FLAGS.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # can be made (check_output_dir); a full disk: cli.run's one line
    slug = lambda p: re.sub(r"[^a-z0-9]+", "_", p.lower()).strip("_")[:48]
    expected = [a for _ in range(FLAGS.seeds) for _, a in prompts]
    records, videos = [], []
    for i, seed, video in source:
        attributes = expected[i]
        path = write_mp4(out_dir / "videos" / f"{i:04d}_{slug(attributes.caption)}.mp4", to_uint8(video), fps=8,
                         pixelformat=FLAGS.pixel_format)
        frames = read_mp4(path)  # measured as a viewer sees it: after the codec
        m = measure(frames)
        want = {a: getattr(attributes, a) for a in ATTRIBUTES}
        got = m.attributes()
        records.append({"prompt": attributes.caption, "seed": seed, "video": str(path.relative_to(out_dir)),
                        "expected": want, "measured": {a: got[a] for a in ATTRIBUTES},
                        "correct": {a: got[a] == want[a] for a in ATTRIBUTES},
                        "numbers": {"background_rgb": m.background_rgb, "colour_rgb": m.colour_rgb,
                                    "travel": m.travel, "shape_errors": m.shape_errors}})
        videos.append(frames[[0, len(frames) // 2, -1]])
    accuracy, confusion = summarize(records)
    print_table(accuracy, confusion, len(records))
    source_name = "ground truth" + (" (degraded)" if FLAGS.degrade else "") if FLAGS.ground_truth else \
        str(FLAGS.checkpoint or DEFAULT_CHECKPOINT)
    summary = {"source": source_name, "samples": len(records), "prompts": len(prompts), "seeds": FLAGS.seeds,
               "accuracy": accuracy, "confusion": confusion, "records": records}
    write_bytes(out_dir / "results.json", json.dumps(summary, indent=1).encode())
    if FLAGS.sheet_samples:
        buffer = io.BytesIO()
        Image.fromarray(contact_sheet(records, videos)).save(buffer, format="PNG")
        write_bytes(out_dir / "contact_sheet.png", buffer.getvalue())
        print(f"wrote {out_dir / 'contact_sheet.png'}")
    print(f"wrote {out_dir / 'results.json'}")


if __name__ == "__main__":
    cli.run(main, compiles=True)
