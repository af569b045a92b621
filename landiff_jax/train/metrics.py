"""Training metrics: a progress line on stdout, `metrics.jsonl` (one JSON object per logged
update: always, for notebooks and tools/plot_metrics.py) and TensorBoard event files under
`tb/` (tensorboardX: a small maintained writer that needs neither TensorFlow nor torch).
Only process 0 writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# dense bf16 matmul peak FLOP/s per device, by jax's device_kind (MFU is left out elsewhere)
PEAK_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12, "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5": 459e12,
    "TPU v5p": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def peak_flops(device_kind: str) -> float | None:
    return PEAK_FLOPS.get(device_kind)


def throughput(seconds_per_update: float, examples: int, tokens_per_example: int, flops_per_example: float | None,
               devices: int, device_peak: float | None) -> dict[str, float]:
    """step time, examples/s, tokens/s and (when FLOPs and the peak are known) MFU of one update."""
    out = {"step_time_s": seconds_per_update, "examples_per_s": examples / seconds_per_update,
           "tokens_per_s": examples * tokens_per_example / seconds_per_update}
    if flops_per_example is not None and device_peak:
        out["mfu"] = examples * flops_per_example / seconds_per_update / (devices * device_peak)
    return out


class MetricsWriter:
    def __init__(self, workdir: str | Path, total_steps: int, enabled: bool = True, tensorboard: bool = True):
        self.total = total_steps
        self.enabled = enabled
        self.jsonl = self.tb = None
        if enabled:
            workdir = Path(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(workdir / "metrics.jsonl", "a")
            if tensorboard:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(workdir / "tb"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        metrics = {k: float(v) for k, v in metrics.items()}
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for name, value in metrics.items():
                self.tb.add_scalar(name, value, step)
            self.tb.flush()
        print(progress_line(step, self.total, metrics), file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def progress_line(step: int, total: int, metrics: dict[str, float]) -> str:
    width = len(str(total))
    bar = "#" * (20 * step // total)
    parts = [f"[{bar:<20}] {step:>{width}}/{total}", f"loss {metrics['loss']:.4f}"]
    for name, fmt in (("grad_norm", "{:.3g}"), ("lr", "{:.3g}"), ("step_time_s", "{:.3f}s"),
                      ("examples_per_s", "{:.1f} ex/s"), ("tokens_per_s", "{:.0f} tok/s"), ("mfu", "{:.1%} MFU"),
                      ("data_wait", "{:.0%} waiting for data")):
        if name in metrics:
            parts.append(("" if name in ("step_time_s", "examples_per_s", "tokens_per_s", "mfu", "data_wait")
                          else name + " ")
                         + fmt.format(metrics[name]))
    return "  ".join(parts)
