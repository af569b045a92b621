"""tools/train_tiny.py --quick: every stage of the tiny LanDiff through the trainer on a few
synthetic clips, the data of each next stage prepared with the models trained so far, and a
converted checkpoint that the pipeline loads and generates from; a second run skips every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = ("render clips", "train vae", "frozen models", "prepare features", "train tokenizer", "tokenizer checkpoint",
         "prepare codes", "measure latent scale", "train lm", "train dit", "base checkpoint", "train control",
         "final checkpoint")


def train_tiny(workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "tools" / "train_tiny.py"), "--workdir", str(workdir), "--quick"],
                          env=env, capture_output=True, text=True, timeout=3000)


@pytest.mark.slow
def test_quick_run_writes_a_loadable_system_and_resumes(tmp_path):
    first = train_tiny(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert list(json.loads((tmp_path / "times.json").read_text())) == list(STEPS)
    for stage in ("vae", "tokenizer", "lm", "dit", "control"):
        assert (tmp_path / "plots" / f"{stage}.png").stat().st_size > 0
    scale = json.loads((tmp_path / "scale_factor.json").read_text())["scale_factor"]

    from landiff_jax.pipeline import GenerateOptions, LanDiff

    pipe = LanDiff.from_checkpoint(tmp_path / "checkpoints" / "tiny")
    assert pipe.cfg.vae.scale_factor == pytest.approx(scale) and not pipe.random_weights
    result = pipe.generate(["a red circle moves left on a black background"], GenerateOptions(seed=1, steps=2))
    assert result.video.shape == (1, 9, 64, 96, 3) and np.isfinite(result.video).all()

    second = train_tiny(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("done already") == len(STEPS)
