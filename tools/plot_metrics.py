"""Loss curves of training runs as a PNG: the `loss` (and its parts, and the lr) of each
metrics.jsonl given (a file or a run's workdir).

  python tools/plot_metrics.py runs/lm_tiny [runs/other ...] --out loss.png [--parts] [--log]

A missing, empty or damaged metrics file (a line that is not a JSON object with a whole-number
'step', no 'loss' at all) is one error line; the PNG is written atomically (its directory made).
"""

import io
import json
from pathlib import Path

from absl import flags  # noqa: E402

from landiff_jax import cli  # noqa: E402
from landiff_jax.files import nearest_existing  # noqa: E402

flags.DEFINE_string("out", "loss.png", "the PNG to write")
flags.DEFINE_bool("parts", False, "also draw every other logged metric that is not throughput or lr")
flags.DEFINE_bool("log", False, "logarithmic loss axis")
FLAGS = flags.FLAGS

NOT_LOSS = {"step", "lr", "grad_norm", "step_time_s", "examples_per_s", "tokens_per_s", "mfu", "data_wait"}


def read_jsonl(path: Path) -> list[dict]:
    path = path / "metrics.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise cli.UsageError(f"no metrics file: {path}")
    rows = []
    for number, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise cli.UsageError(f"{path}:{number}: not a JSON object ({e})")
        if not isinstance(row, dict) or isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
            raise cli.UsageError(f"{path}:{number}: a metrics line is a JSON object with a whole-number 'step'")
        rows.append(row)
    if not rows:
        raise cli.UsageError(f"{path} holds no metrics")
    if not any("loss" in row for row in rows):
        raise cli.UsageError(f"{path} holds no 'loss'")
    last = {}
    for row in rows:  # a resumed run logs some steps again: the later line wins
        last[row["step"]] = row
    return [last[s] for s in sorted(last)]


def plot(runs: dict[str, list[dict]], out: Path, parts: bool, log: bool) -> None:
    import matplotlib

    from landiff_jax.files import write_bytes

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(3, 1))
    for name, rows in runs.items():
        keys = ["loss"] + (sorted({k for r in rows for k in r} - NOT_LOSS - {"loss"}) if parts else [])
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), label=f"{name}: {key}" if len(runs) > 1 or parts else key)
        lr = [(r["step"], r["lr"]) for r in rows if "lr" in r]
        if lr:
            ax_lr.plot(*zip(*lr), label=name)
    ax.set_ylabel("loss")
    ax.set_yscale("log" if log else "linear")
    ax.legend()
    ax.grid(alpha=0.3)
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("update")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120, format="png")
    plt.close(fig)
    write_bytes(out, png.getvalue())


def main(argv):
    if len(argv) < 2:
        raise cli.UsageError("give one or more metrics.jsonl files or run directories")
    runs = {Path(a).name if Path(a).is_dir() else Path(a).stem: read_jsonl(Path(a)) for a in argv[1:]}
    out = Path(FLAGS.out)
    existing = nearest_existing(out)
    if existing == out and out.is_dir() or existing != out and not existing.is_dir():
        raise cli.UsageError(f"--out {out}: {existing} is {'a directory' if existing == out else 'not a directory'}")
    plot(runs, out, FLAGS.parts, FLAGS.log)
    print(f"wrote {out}")


if __name__ == "__main__":
    cli.run(main)
