"""Time to the first video: `tools/generate.py` from a converted checkpoint of RANDOM weights, wall
clock to the written mp4, with an empty compilation cache (cold) and then with it filled (warm),
and the restore rate each run printed.

  python -m tools.bench.first_video --preset full --dtype bfloat16 --checkpoint /tmp/landiff-random-full

Where --checkpoint does not exist, it is written first: `LanDiff.random`'s weights of the preset
(the parameters generation reads) through the project's writer (`checkpoint.save_component`,
byte-level text ids), into a temporary sibling renamed at the end. The cache is a fresh
directory (--cache_dir to keep one). The second run also reads the checkpoint from the OS page
cache: for a cold read, drop it between runs (`sync; echo 3 > /proc/sys/vm/drop_caches`, root)
and rerun with --cache_dir. One JSON line per run. This process never starts a device itself (JAX
would hold its memory): the writing and each generate run are child processes.
"""

import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from landiff_jax import cli

flags.DEFINE_enum("preset", "full", ["tiny", "full"], "preset")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "dtype")
flags.DEFINE_string("checkpoint", None, "converted checkpoint directory (written first if absent)", required=True)
flags.DEFINE_string("cache_dir", None, "compilation cache directory (default: a fresh temporary one)")
flags.DEFINE_list("runs", ["cold", "warm"], "labels of the generate runs, one after another on the same cache")
flags.DEFINE_integer("num_frames", None, "video frames (default: the preset's, 49 at full size)")
flags.DEFINE_integer("steps", None, "diffusion steps (default: the preset's, 50 at full size)")
FLAGS = flags.FLAGS

REPO = Path(__file__).resolve().parents[2]
PROMPT = "A small red fox walks slowly across a quiet forest at dawn, soft light, cinematic."


def write_random_checkpoint(out: Path, preset: str, dtype: str) -> None:
    import jax

    from landiff_jax import checkpoint
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.pipeline import LanDiff

    cfg = LanDiffConfig.preset(preset).with_dtype(dtype)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    pipe = LanDiff.random(cfg)
    for name in list(pipe.params):
        checkpoint.save_component(tmp, name, pipe.params.pop(name))
    for component in checkpoint.TEXT_DIRS:
        checkpoint.write_byte_level_tokenizer(tmp, component)
    checkpoint.write_config(tmp, cfg, converted_from=f"RANDOM weights ({preset}, tools/bench/first_video.py)")
    tmp.rename(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out}: {size / 1e9:.1f} GB in {time.perf_counter() - start:.0f} s on {jax.devices()[0].device_kind}",
          flush=True)


MILESTONES = {"loading": "loading ", "restored": "restored ", "LM": "LM: semantic tokens: ",
              "diffusion": "diffusion: guided steps: ", "VAE": "VAE: decode: ", "written": "wrote "}


def timed_run(cmd: list[str]) -> tuple[str, dict[str, float], float]:
    """Run one generate process → (its output, {milestone: seconds from the start when its line
    came}, wall seconds to its exit): where the time to the first video goes (start-up before
    "loading", restoring while compiling ahead until "restored", then each stage's end)."""
    start = time.perf_counter()
    lines, timeline = [], {}
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            lines.append(line)
            for name, prefix in MILESTONES.items():
                if name not in timeline and line.startswith(prefix):
                    timeline[name] = round(time.perf_counter() - start, 1)
    wall = time.perf_counter() - start
    output = "".join(lines)
    if process.returncode != 0:
        raise SystemExit(f"generate.py failed:\n{output[-3000:]}")
    return output, timeline, wall


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
    out = Path(FLAGS.checkpoint)
    if not out.exists():
        write = (f"from pathlib import Path; from tools.bench.first_video import write_random_checkpoint; "
                 f"write_random_checkpoint(Path({str(out)!r}), {FLAGS.preset!r}, {FLAGS.dtype!r})")
        if subprocess.run([sys.executable, "-c", write], cwd=REPO).returncode != 0:
            raise SystemExit(f"writing {out} failed")
    cache = Path(FLAGS.cache_dir or tempfile.mkdtemp(prefix="landiff_jax_xla_"))
    videos = Path(tempfile.mkdtemp(prefix="first_video_"))
    extra = [f"--{name}={FLAGS[name].value}" for name in ("num_frames", "steps") if FLAGS[name].value is not None]
    for label in FLAGS.runs:
        cmd = [sys.executable, "tools/generate.py", "--checkpoint", str(out), "--prompt", PROMPT, "--dtype",
               FLAGS.dtype, "--output_dir", str(videos), "--overwrite", "--compilation_cache_dir", str(cache), *extra]
        output, timeline, wall = timed_run(cmd)
        restored = re.search(r"restored ([\d.]+) GB of weights in ([\d.]+) s \(([\d.]+) GB/s\)", output)
        figures = {"date": datetime.date.today().isoformat(), "stage": "first_video", "run": label,
                   "preset": FLAGS.preset, "dtype": FLAGS.dtype, "wall_to_mp4_s": round(wall, 1),
                   "timeline_s": timeline, "videos": len(list(videos.glob("*.mp4"))),
                   "cache_files": sum(1 for f in cache.rglob("*") if f.is_file())}
        if restored:
            figures.update(restore_gb=float(restored[1]), restore_s=float(restored[2]),
                           restore_gb_per_s=float(restored[3]))
        for key, pattern in (("checks_s", r"after ([\d.]+) s of checks"),
                             ("compile_ahead_s", r"compiled ahead in ([\d.]+) s")):
            if found := re.search(pattern, output):
                figures[key] = float(found[1])
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    cli.run(main)
