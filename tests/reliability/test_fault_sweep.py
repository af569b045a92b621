"""Issue 13's "re-run the sweep": every case of tools/fault_sweep.py (bad inputs and faults against
every tool, as a careful user meets them) gives a one-line error or the right behaviour: no silent
exit 0 on bad input, no data loss, no traceback for a user error, no hang. Several minutes on 2
CPU cores, hence slow."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_case_of_the_sweep_is_ok(fixtures_dir, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, str(REPO / "tools" / "fault_sweep.py"), "--out", str(tmp_path / "sweep"),
                             "--fixtures", str(fixtures_dir)], env=env, capture_output=True, text=True, timeout=3000)
    print(result.stdout[-6000:])  # the summary table (pytest -s shows it)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.split(" cases: ")[1].startswith(f"{summary.split()[0]} OK"), summary
