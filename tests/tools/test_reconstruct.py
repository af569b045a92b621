"""tools/reconstruct.py (in subprocesses: the tool defines absl flags): a synthetic mp4 of another
size than the model's goes through the tiny random-weight system with the null text and comes
back side by side with its reconstruction; bad input is one line before any weight is read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landiff_jax.config import LanDiffConfig
from landiff_jax.data import clips, synthetic
from landiff_jax.video_io import read_mp4, write_mp4

REPO = Path(__file__).resolve().parents[2]
CFG = LanDiffConfig.tiny()
FRAMES = CFG.video_frames(CFG.max_latent_frames)  # 9


def tool(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "tools" / "reconstruct.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def synthetic_mp4(path: Path, frames: int) -> Path:
    """A clip of the synthetic world at 72×120 (the tiny model takes 64×96: cropped and resized)."""
    return write_mp4(path, synthetic.sample_clip(0, 3, frames, 72, 120)[2])


def test_reconstruction_side_by_side_with_feature_errors(tmp_path):
    video = synthetic_mp4(tmp_path / "clip.mp4", FRAMES + 3)
    result = tool(str(video), "--random_weights", "--config", "configs/tiny.py", "--steps", "2", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RANDOM weights" in result.stdout
    numbers = re.search(r"MSE (\S+) .* cosine (\S+)", result.stdout)
    assert numbers, result.stdout
    mse, cosine = float(numbers[1]), float(numbers[2])
    assert np.isfinite(mse) and mse > 0 and -1 <= cosine <= 1, result.stdout

    out = tmp_path / "clip_reconstruction.mp4"
    frames = read_mp4(out)
    height, width = CFG.video_size
    assert frames.shape == (FRAMES, height, 2 * width, 3)
    # the left half is the input as prepare_data decodes it (8 fps, centre crop, resize), up to the codec
    clip = clips.decode_video(video, clips.ClipSpec(FRAMES, height, width))
    assert np.abs(frames[:, :, :width].astype(float) - clip).mean() < 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip_reconstruction.mp4"]  # no temporaries


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "video not found"),
    (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", "cannot decode"),
    (lambda d: synthetic_mp4(d / "short.mp4", 4), f"need {FRAMES}"),
])
def test_bad_video_is_one_line(tmp_path, make, message):
    result = tool(str(make(tmp_path)), "--random_weights")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not list(tmp_path.glob("*_reconstruction.mp4"))


def test_checkpoint_without_theia_is_one_line(tmp_path):
    """A converted checkpoint whose tokenizer has no Theia weights (a release file without them)
    cannot encode videos: said in one line, before any component is read (the checkpoint holds
    no other component: reading one would fail on it first)."""
    from landiff_jax import checkpoint, tokenizer
    from landiff_jax.nn.init import random_params

    ckpt = tmp_path / "ckpt"
    checkpoint.save_component(ckpt, "tokenizer", random_params(tokenizer.abstract_params(CFG.tokenizer), 0))
    for component in checkpoint.TEXT_DIRS:
        checkpoint.write_byte_level_tokenizer(ckpt, component)
    checkpoint.write_config(ckpt, CFG, converted_from="test")
    result = tool(str(synthetic_mp4(tmp_path / "clip.mp4", FRAMES)), "--checkpoint", str(ckpt))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "holds no Theia weights" in lines[0], result.stderr

