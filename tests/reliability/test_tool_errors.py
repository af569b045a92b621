"""Item 5 of issue 13 for the other tools: a user error is one line, non-zero, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tool(name, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "tools" / name), *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("setup, args, message", [
    (None, ["{tmp}/missing"], "no such directory"),
    ("bad_meta", ["{tmp}"], "meta.json is not valid JSON"),
])
def test_parity_user_errors(tmp_path, setup, args, message):
    if setup == "bad_meta":
        (tmp_path / "case").mkdir()
        (tmp_path / "case" / "meta.json").write_text("{oops")
    result = tool("parity.py", *[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].endswith("(see --help)"), result.stderr


@pytest.mark.parametrize("name, args", [
    ("generate.py", ["--prompt", "a red circle moves left on a black background", "--output_dir", "{tmp}/out"]),
    ("reconstruct.py", ["{tmp}/clip.mp4", "--random_weights"]),
    ("evaluate.py", ["--ground_truth", "--subset", "1", "--output_dir", "{tmp}/eval"]),
])
def test_a_missing_video_encoder_is_one_line_before_any_work(tmp_path, name, args):
    """Seen on a GPU machine: generate.py ran the whole model, then failed with an ImportError
    traceback when writing the mp4. Here the encoder's package fails to import."""
    shadow = tmp_path / "shadow" / "imageio_ffmpeg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    (tmp_path / "clip.mp4").write_bytes(b"not decoded before the check")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=f"{tmp_path / 'shadow'}{os.pathsep}{REPO}")
    result = subprocess.run([sys.executable, str(REPO / "tools" / name), *[a.format(tmp=tmp_path) for a in args]],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install imageio-ffmpeg" in lines[0], result.stderr
    assert "loading" not in result.stdout and not (tmp_path / "out").exists() and not (tmp_path / "eval").exists()
