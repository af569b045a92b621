"""The README's main-job stand-in: `python -m landiff_jax.text --preset tiny --prompt ...`."""

from __future__ import annotations

from landiff_jax.text.__main__ import main


def test_tiny_random_with_byte_ids(capsys):
    assert main(["--preset", "tiny", "--prompt", "A fox.", "--prompt", "Waves at sunset."]) == 0
    out = capsys.readouterr().out
    assert "RANDOM" in out and "byte-level" in out
    assert "embedding shape: (2, 17, 32) (lm side" in out


def test_with_t5_dir(capsys, fixtures_dir):
    t5_dir = fixtures_dir / "t5" / "diffusion_max_length16" / "t5"
    assert main(["--t5-dir", str(t5_dir), "--side", "diffusion", "--text-length", "16", "--prompt", "An astronaut."]) == 0
    assert "embedding shape: (1, 16, 32) (diffusion side" in capsys.readouterr().out
