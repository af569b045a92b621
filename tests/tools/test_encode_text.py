"""The text tool as a user runs it: `python tools/encode_text.py --preset tiny --prompt ...`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, str(REPO / "tools" / "encode_text.py"), *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_tiny_random_with_byte_ids():
    out = _run("--preset", "tiny", "--prompt", "A fox.", "--prompt", "Waves at sunset.")
    assert "RANDOM" in out and "byte-level" in out
    assert "embedding shape: (2, 17, 32) (lm side" in out


def test_with_t5_dir(fixtures_dir):
    t5_dir = fixtures_dir / "t5" / "diffusion_max_length16" / "t5"
    out = _run("--t5_dir", str(t5_dir), "--side", "diffusion", "--text_length", "16", "--prompt", "An astronaut.")
    assert "embedding shape: (1, 16, 32) (diffusion side" in out
