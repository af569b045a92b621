"""A non-editable install works: the wheel built from this checkout carries its package data
(the published CHECKSUM.md5), converts the e2e fixture tree and generates from it, run with only
the installed copy on the path (cwd and PYTHONPATH outside the checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E_CASE = "e2e/t2v_17f_64x96"


def _run(cmd, cwd, env, timeout=900):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_wheel_converts_and_generates(fixtures_dir, tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(ROOT)], tmp_path,
         base_env)
    wheels = list((tmp_path / "dist").glob("landiff_jax-*.whl"))
    assert len(wheels) == 1, wheels
    target = tmp_path / "site"
    _run([*pip, "install", "--no-deps", "--target", str(target), str(wheels[0])], tmp_path, base_env)
    assert (target / "landiff_jax" / "CHECKSUM.md5").is_file()

    env = dict(base_env, PYTHONPATH=str(target), JAX_PLATFORMS="cpu")
    where = _run([sys.executable, "-c", "import landiff_jax; print(landiff_jax.__file__)"], tmp_path, env)
    assert where.strip().startswith(str(target)), where
    case = fixtures_dir / E2E_CASE
    out = tmp_path / "converted"
    _run([sys.executable, str(ROOT / "tools" / "convert.py"), "--release", str(case / "ckpts/LanDiff"),
          "--flan_t5", str(case / "flan-t5"), "--out", str(out), "--original_config", str(case / "meta.json")],
         tmp_path, env)  # md5 sums verified against the tree's own CHECKSUM.md5
    printed = _run([sys.executable, "-c", "from landiff_jax import release; "
                    "print(len(release.read_checksums(release.PUBLISHED_CHECKSUMS)))"], tmp_path, env)
    assert int(printed) > 10  # the published list of the release's files
    videos = tmp_path / "videos"
    _run([sys.executable, str(ROOT / "tools" / "generate.py"), "--checkpoint", str(out), "--prompt", "a red fox",
          "--steps", "2", "--greedy", "--output_dir", str(videos)], tmp_path, env)
    assert [p.name for p in videos.glob("*.mp4")] == ["000_a_red_fox.mp4"]
