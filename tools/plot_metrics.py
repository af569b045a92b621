"""Loss curves of training runs as a PNG: the `loss` (and its parts, and the lr) of each
metrics.jsonl given (a file or a run's workdir).

  python tools/plot_metrics.py runs/lm_tiny [runs/other ...] --out loss.png [--parts] [--log]
"""

import json
from pathlib import Path

from absl import app, flags  # noqa: E402

flags.DEFINE_string("out", "loss.png", "the PNG to write")
flags.DEFINE_bool("parts", False, "also draw every other logged metric that is not throughput or lr")
flags.DEFINE_bool("log", False, "logarithmic loss axis")
FLAGS = flags.FLAGS

NOT_LOSS = {"step", "lr", "grad_norm", "step_time_s", "examples_per_s", "tokens_per_s", "mfu", "data_wait"}


def read_jsonl(path: Path) -> list[dict]:
    path = path / "metrics.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise app.UsageError(f"no metrics file: {path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise app.UsageError(f"{path} holds no metrics")
    last = {}
    for row in rows:  # a resumed run logs some steps again: the later line wins
        last[row["step"]] = row
    return [last[s] for s in sorted(last)]


def plot(runs: dict[str, list[dict]], out: Path, parts: bool, log: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(3, 1))
    for name, rows in runs.items():
        keys = ["loss"] + (sorted({k for r in rows for k in r} - NOT_LOSS - {"loss"}) if parts else [])
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
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
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("give one or more metrics.jsonl files or run directories")
    runs = {Path(a).name if Path(a).is_dir() else Path(a).stem: read_jsonl(Path(a)) for a in argv[1:]}
    out = Path(FLAGS.out)
    plot(runs, out, FLAGS.parts, FLAGS.log)
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
