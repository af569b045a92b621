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
