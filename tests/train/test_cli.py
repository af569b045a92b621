"""tools/train.py's user errors (one line, exit 2, before anything compiles) and
tools/plot_metrics.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
from landiff_jax.train.config import DataConfig, OptimizerConfig, TrainConfig

def get_config():
    return TrainConfig(stage={stage!r}, model=None, batch_size=4, data=DataConfig(path={path!r}),
                       optimizer=OptimizerConfig(accumulation_steps=2))
"""


def train_cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "tools" / "train.py"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture()
def config_file(tmp_path):
    def write(stage="lm", path=None):
        file = tmp_path / "exp.py"
        file.write_text(CONFIG.format(stage=stage, path=str(tmp_path) if path is None else path))
        return str(file)
    return write


@pytest.mark.parametrize("case, expected", [
    ("missing_file", "config file not found"),
    ("bad_override", "has no field 'no_such_field'"),
    ("invalid_value", "must be a positive multiple of optimizer.accumulation_steps"),
    ("bad_data_path", "data.path '/no/such/dir' is not a directory"),
    ("unknown_stage", "stage 'nope' is not a training task"),
    ("bad_init_from", "init_from '/no/ckpt' is not a converted checkpoint directory"),
])
def test_user_errors_are_one_line(config_file, tmp_path, case, expected):
    args = {  # each writes its own config file when called
        "missing_file": lambda: ["--config", str(tmp_path / "absent.py")],
        "bad_override": lambda: ["--config", config_file(), "no_such_field=1"],
        "invalid_value": lambda: ["--config", config_file(), "batch_size=3"],
        "bad_data_path": lambda: ["--config", config_file(path="/no/such/dir")],
        "unknown_stage": lambda: ["--config", config_file(stage="nope"), f"--workdir={tmp_path / 'run'}"],
        "bad_init_from": lambda: ["--config", config_file(), "init_from=/no/ckpt", f"--workdir={tmp_path / 'run'}"],
    }[case]()
    result = train_cli(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_plot_metrics(tmp_path):
    rows = [{"step": s, "loss": 2.0 / s, "lr": 1e-3, "mse": 1.0 / s} for s in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "loss.png"
    result = subprocess.run([sys.executable, str(REPO / "tools" / "plot_metrics.py"), str(tmp_path), "--out", str(out),
                             "--parts"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
