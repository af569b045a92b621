"""tools/train_tiny.py --quick: every stage of the tiny LanDiff through the trainer on a few
synthetic clips, the data of each next stage prepared with the models trained so far, and a
converted checkpoint that the pipeline loads and generates from; a second run skips every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = ("render clips", "train vae", "frozen models", "prepare features", "train tokenizer", "tokenizer checkpoint",
         "prepare lm codes", "train lm", "coded checkpoint", "prepare latents", "measure latent scale", "train dit",
         "base checkpoint", "train dit_refine1", "refined1 checkpoint",
         "train dit_refine2", "refined2 checkpoint", "train control", "final checkpoint")


def train_tiny(workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "tools" / "train_tiny.py"), "--workdir", str(workdir), "--quick"],
                          env=env, capture_output=True, text=True, timeout=3000)


@pytest.mark.slow
def test_quick_run_writes_a_loadable_system_and_resumes(tmp_path):
    first = train_tiny(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # the pixel and semantic branches run side by side: their steps interleave
    assert sorted(json.loads((tmp_path / "times.json").read_text())) == sorted(STEPS)
    for stage in ("vae", "tokenizer", "lm", "dit", "dit_refine1", "dit_refine2", "control"):
        assert (tmp_path / "plots" / f"{stage}.png").stat().st_size > 0
    scale = json.loads((tmp_path / "scale_factor.json").read_text())["scale_factor"]

    from landiff_jax.pipeline import GenerateOptions, LanDiff

    pipe = LanDiff.from_checkpoint(tmp_path / "checkpoints" / "tiny")
    assert pipe.cfg.vae.scale_factor == pytest.approx(scale) and not pipe.random_weights
    result = pipe.generate(["a red circle moves left on a black background"], GenerateOptions(seed=1, steps=2))
    assert result.videos.shape == (1, 9, 64, 96, 3) and result.finite.all()

    second = train_tiny(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("done already") == len(STEPS)


def reuse(directory: Path) -> subprocess.CompletedProcess:
    code = ("import sys, jax; sys.path.insert(0, 'tools'); from pathlib import Path; import train_tiny as t; "
            f"r = t.reused_components(Path({str(directory)!r}), t.load_config('tiny_landiff.py')); "
            "print(sorted(r), sorted({str(a.dtype) for c in r.values() for a in jax.tree.leaves(c)}))")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_reuse_takes_the_shipped_checkpoint_in_float32_and_refuses_a_non_checkpoint(tmp_path):
    kept = reuse(REPO / "checkpoints" / "tiny")  # stored in bfloat16
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert kept.stdout.strip().splitlines()[-1] == "['lm', 't5_dit', 't5_lm', 'tokenizer', 'vae'] ['float32']"
    refused = reuse(tmp_path)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1] == (
        f"train_tiny: --reuse: not a converted LanDiff checkpoint (no landiff_config.json): {tmp_path}")


def test_a_stop_signal_reaches_the_running_tool_and_starts_no_other(tmp_path):
    """SIGTERM to train_tiny is passed on to the tool under way (train.py then saves its update);
    the command then ends with a line saying how to resume, and starts no further tool."""
    ready = tmp_path / "ready"
    child = ("import signal, sys, time; from pathlib import Path; "
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143)); "
             f"Path({str(ready)!r}).touch(); time.sleep(60)")
    code = f"""
import signal, sys, threading, time
from pathlib import Path
sys.path.insert(0, 'tools')
import train_tiny
tools = train_tiny.Tools()
def stop_when_ready():
    while not Path({str(ready)!r}).exists():
        time.sleep(0.05)
    tools.stop(signal.SIGTERM)
threading.Thread(target=stop_when_ready).start()
for args in (('-c', {child!r}), ('-c', 'print("SECOND TOOL RAN")')):
    try:
        tools.run(*args)
    except SystemExit as e:
        print('EXIT', e)
"""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("EXIT", "SECOND"))]
    assert lines == ["EXIT train_tiny: stopped during -c (exit 143); run the same command again to resume",
                     "EXIT train_tiny: stopped before -c; run the same command again to resume"], result.stdout
