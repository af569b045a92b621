"""The README's Python example runs as written (it uses the tiny config and RANDOM weights) and
prints what its comment says."""

from __future__ import annotations

import re
from pathlib import Path

from landiff_jax.video_io import read_mp4

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section should hold one python block"
    return blocks[0]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    code = python_example()
    promised = re.search(r"print\(.*\)\s*#\s*(.+)", code).group(1).strip()
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert promised in out.splitlines(), out
    assert "compiling the LM sampler" in out and "diffusion sampler: step 4/4" in out, out
    assert read_mp4(tmp_path / "fox.mp4").shape == (9, 64, 96, 3)
