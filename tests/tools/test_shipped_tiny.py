"""The shipped tiny LanDiff (checkpoints/tiny, trained by tools/train_tiny.py): it loads, its videos
have the size its config declares, and tools/evaluate.py on a fixed subset of fresh prompts meets
the issue's targets minus a margin.

Margin: 8 samples (fixed prompts and seeds, none tuned on); one sample is 12.5 points. The margin
of 10 points allows one miss of background or colour and two of motion, for the float differences
of another CPU (XLA's kernels, ffmpeg's codec) flipping a borderline measurement. Shape, the
attribute nearest its target (77.1–93.8 % on three CPU draws of 48–96 prompts, BUILD_NOTES.md),
gets 25 points: at 80 % a sample of 8 has a standard deviation of 14 points, so it asserts at
least 4 of 8, which the previous model (41.7 %) would fail at its expected 3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from landiff_jax import checkpoint
from landiff_jax.cli import DEFAULT_CHECKPOINT
from landiff_jax.video_io import read_mp4

REPO = Path(__file__).resolve().parents[2]
TARGETS = {"background": 0.95, "colour": 0.90, "motion": 0.85, "shape": 0.70}
MARGIN = 0.10
MARGINS = {"shape": 0.25}  # see the docstring
SUBSET = 8


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    assert DEFAULT_CHECKPOINT.is_dir(), f"the shipped checkpoint is missing: {DEFAULT_CHECKPOINT}"
    out = tmp_path_factory.mktemp("evaluate")
    # XLA's optimised CPU code: 8 samples × 20 guided DiT steps run 3× faster with it, more than the
    # longer compile costs (tests/conftest.py turns LLVM's optimisation off for the session)
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_backend_optimization_level" not in f)
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    result = subprocess.run(
        [sys.executable, "tools/evaluate.py", "--subset", str(SUBSET), "--subset_seed", "2026", "--seeds", "1",
         "--seed", "9001", "--batch_size", str(SUBSET), "--sheet_samples", "0", "--output_dir", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not re.search(r"^I\d{4} ", result.stderr, re.M), "storage INFO logs without --verbose"
    assert "os.fork()" not in result.stderr  # issue 14: the mp4s are read back with JAX running, without a fork
    return out, json.loads((out / "results.json").read_text())


def test_shipped_checkpoint_is_small_and_verified():
    size = sum(p.stat().st_size for p in DEFAULT_CHECKPOINT.rglob("*") if p.is_file())
    assert size <= 30 * 2**20, f"{size / 2**20:.1f} MB"
    checkpoint.verify(DEFAULT_CHECKPOINT, level="full")
    assert checkpoint.load_config(DEFAULT_CHECKPOINT).dit.param_dtype == "bfloat16"


def test_videos_have_the_declared_size(evaluation):
    out, summary = evaluation
    cfg = checkpoint.load_config(DEFAULT_CHECKPOINT)
    assert summary["samples"] == SUBSET and summary["source"] == str(DEFAULT_CHECKPOINT)
    for record in summary["records"]:
        frames = read_mp4(out / record["video"])
        assert frames.shape == (cfg.video_frames(cfg.dit.latent_frames), *cfg.video_size, 3)


def test_main_job_uses_the_shipped_model(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    prompt = "a blue square moves up on a white background"
    # 2 of the checkpoint's 20 diffusion steps: the same job and video size in ~30 % less CPU (the
    # evaluation above runs the default steps)
    result = subprocess.run([sys.executable, "tools/generate.py", "--prompt", prompt, "--steps", "2", "--output_dir",
                             str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(DEFAULT_CHECKPOINT) in result.stdout and "RANDOM" not in result.stdout + result.stderr
    assert "os.fork()" not in result.stderr
    cfg = checkpoint.load_config(DEFAULT_CHECKPOINT)
    frames = read_mp4(tmp_path / "000_a_blue_square_moves_up_on_a_white_background.mp4")
    assert frames.shape == (cfg.video_frames(cfg.dit.latent_frames), *cfg.video_size, 3)


@pytest.mark.parametrize("attribute", ["background", "colour", "motion", "shape"])
def test_meets_the_target_minus_a_margin(evaluation, attribute):
    _, summary = evaluation
    margin = MARGINS.get(attribute, MARGIN)
    assert summary["accuracy"][attribute] >= TARGETS[attribute] - margin, summary["confusion"][attribute]
