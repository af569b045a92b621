"""Helpers of the reliability tests: a tiny full disk (tmpfs) and the processes still running."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only); skipped, with the reason, where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs mount, which needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


E2E_CASE = "e2e/t2v_17f_64x96"


def e2e_tree(fixtures_dir: Path, destination: Path) -> Path:
    """A writable copy of the e2e fixture's released tree + Flan-T5 dir (no io.npz)."""
    import shutil

    shutil.copytree(fixtures_dir / E2E_CASE, destination, ignore=shutil.ignore_patterns("io.npz"))
    return destination


@pytest.fixture(scope="session")
def converted(fixtures_dir, tmp_path_factory):
    """The e2e fixture tree converted once (the session's only conversion), with a stale temporary
    directory of an earlier killed run beside the output: (checkpoint dir, progress lines)."""
    import json

    from landiff_jax.release import convert_release

    root = tmp_path_factory.mktemp("converted")
    case = fixtures_dir / E2E_CASE
    out = root / "ckpt"
    stale = root / ".ckpt.tmp-killed"
    (stale / "params").mkdir(parents=True)
    lines: list[str] = []
    meta = json.loads((case / "meta.json").read_text())
    convert_release(case / "ckpts/LanDiff", case / "flan-t5", out, meta["config"], progress=lines.append)
    return out, lines
