"""Found by tools/fault_sweep.py (issue 13): tools/plot_metrics.py printed its whole help for a
usage error, and a damaged metrics file (a cut line, a line without 'step') or an --out in a
missing directory were tracebacks. One line each now; the PNG's directory is made."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_damaged_metrics_and_outputs(tmp_path):
    files = {"cut.jsonl": '{"step": 1, "loss": 2.0}\n{"step": 2, "loss"\n', "nostep.jsonl": '{"loss": 2.0}\n',
             "noloss.jsonl": '{"step": 1, "lr": 0.1}\n', "good.jsonl": '{"step": 1, "loss": 2.0, "lr": 0.1}\n',
             "file": "x"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    runs = [
        (["cut.jsonl"], 2, f"plot_metrics.py: error: {tmp_path}/cut.jsonl:2: not a JSON object (Expecting ':' "
                           "delimiter: line 1 column 19 (char 18)) (see --help)"),
        (["nostep.jsonl"], 2, f"plot_metrics.py: error: {tmp_path}/nostep.jsonl:1: a metrics line is a JSON object "
                              "with a whole-number 'step' (see --help)"),
        (["noloss.jsonl"], 2, f"plot_metrics.py: error: {tmp_path}/noloss.jsonl holds no 'loss' (see --help)"),
        ([], 2, "plot_metrics.py: error: give one or more metrics.jsonl files or run directories (see --help)"),
        (["good.jsonl", "--out", "file/loss.png"], 2,
         f"plot_metrics.py: error: --out {tmp_path}/file/loss.png: {tmp_path}/file is not a directory (see --help)"),
        (["good.jsonl", "--out", "new/loss.png"], 0, None),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    absolute = lambda a: str(tmp_path / a) if not a.startswith("--") else a  # noqa: E731
    procs = [subprocess.Popen([sys.executable, str(REPO / "tools" / "plot_metrics.py"), *map(absolute, args)], env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args, _, _ in runs]
    for proc, (args, code, line) in zip(procs, runs):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, (args, err[-2000:])
        assert err.strip().splitlines() == ([line] if line else []), (args, err[-2000:])
    assert (tmp_path / "new" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["loss.png"]  # written atomically: no temporary
