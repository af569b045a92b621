"""tools/prepare_data.py: a run killed inside a shard resumes, keeping complete shards only."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landiff_jax.data import records
from landiff_jax.data.sources import SyntheticLM, plan_dataset
from landiff_jax.lm.config import LMConfig

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--stages", "lm", "--source", "synthetic_lm", "--num_examples", "25", "--examples_per_shard", "10", "--seed", "5"]


def tool(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, str(REPO / "tools" / "prepare_data.py"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


class Killed(Exception):
    pass


def test_resume_after_killed_shard(tmp_path):
    # what the tool plans for these arguments (tiny LM, one group of frames, 16 text rows)
    source = SyntheticLM.for_lm(LMConfig.tiny(), frames=3, max_text=16, seed=5)
    info = plan_dataset(source, 25, 10)

    def dies_in_third_shard(start, count):
        for i, example in enumerate(source.examples(start, count)):
            if start == 20 and i == 3:
                raise Killed
            yield example

    out = tmp_path / "ds"
    with pytest.raises(Killed):
        records.write_dataset(out, info, dies_in_third_shard)
    shard0, shard1, shard2 = (out / s.file for s in info.shards)
    assert shard0.is_file() and shard1.is_file() and not shard2.exists()
    assert shard2.with_name(shard2.name + ".tmp").is_file() and not (out / records.DATASET_FILE).exists()
    shard1.write_bytes(shard1.read_bytes()[:100])  # a damaged final file is redone too
    kept = shard0.stat().st_mtime_ns

    run = tool(*ARGS, "--out", str(out))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"{shard0.name}: kept (complete); 10/25 examples")
    assert lines[1].startswith(f"{shard1.name}: written; 20/25 examples") and lines[1].endswith("examples/s")
    assert lines[2].startswith(f"{shard2.name}: written; 25/25 examples")
    assert shard0.stat().st_mtime_ns == kept
    assert sorted(p.name for p in out.iterdir()) == sorted([records.DATASET_FILE] + [s.file for s in info.shards])

    data = records.RecordSource(out)
    assert data.info == info
    for i, want in enumerate(source.examples(0, 25)):
        got = data[i]
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_bad_arguments_get_one_line(tmp_path):
    run = tool("--source", "synthetic_lm", "--stages", "lm", "--num_examples", "10", "--examples_per_shard", "0", "--out", str(tmp_path / "x"))
    assert run.returncode == 2
    assert run.stderr.strip() == "error: --examples_per_shard must be >= 1, got 0"
    assert not (tmp_path / "x").exists()
