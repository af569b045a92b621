"""Found by tools/fault_sweep.py (issue 13): tools/train_tiny.py printed its whole help for a
usage error, a --workdir that is a file was a FileExistsError traceback, and a bad --reuse was
found only after the workdir was made. One line each now, nothing written."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bad_arguments_are_one_line_and_write_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    runs = [
        (["--workdir", "{tmp}/file", "--quick"], 2, "train_tiny.py: error: --workdir {tmp}/file is not a directory "
                                                   "(see --help)"),
        (["--workdir", "{tmp}/w", "--clips", "0"], 2, "train_tiny.py: error: --clips must be >= 1, got 0 (see --help)"),
        (["--workdir", "{tmp}/w", "--reuse_dit"], 2,
         "train_tiny.py: error: --reuse_dit needs --reuse DIR (the checkpoint whose base DiT is kept) (see --help)"),
        (["--workdir", "{tmp}/w", "--refine_rounds", "-1"], 2,
         "train_tiny.py: error: --refine_rounds must be >= 0, got -1 (see --help)"),
        (["--workdir", "{tmp}/w", "--reuse", "{tmp}/none", "--reuse_dit", "--refine_rounds", "0"], 2,
         "train_tiny.py: error: --refine_rounds must be >= 1 with --reuse_dit (it trains only the refining rounds), "
         "got 0 (see --help)"),
        (["--workdir", "{tmp}/w", "--reuse", "{tmp}/none"], 1,
         "train_tiny: --reuse: not a converted LanDiff checkpoint (no landiff_config.json): {tmp}/none"),
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, str(REPO / "tools" / "train_tiny.py"),
                               *(a.format(tmp=tmp_path) for a in args)], env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for args, _, _ in runs]
    for proc, (args, code, line) in zip(procs, runs):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == code, (args, err[-2000:])
        assert err.strip().splitlines() == [line.format(tmp=tmp_path)], (args, err[-2000:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
