"""End to end: the tiny random-weight CLI writes a playable mp4; the e2e fixture passes through
tools/convert.py and the pipeline; the conversion tool refuses broken trees and leaves nothing."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError
from landiff_jax.parity import RUNNERS, load_case
from landiff_jax.pipeline import GenerateOptions, LanDiff
from landiff_jax.release import convert_release
from landiff_jax.video_io import read_mp4

REPO = Path(__file__).resolve().parents[2]
E2E_CASE = "e2e/t2v_17f_64x96"


def test_generate_cli_tiny_random_weights_writes_mp4(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    cache = tmp_path / "xla_cache"
    cmd = [sys.executable, "tools/generate.py", "--preset", "tiny", "--random_weights", "--output_dir", str(tmp_path),
           "--prompt", "a red fox", "--prompt", "snow falls on a quiet town", "--compilation_cache_dir", str(cache)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RANDOM weights" in result.stdout
    assert len(list(cache.iterdir())) > 5  # every stage's executables kept for the next run
    videos = sorted(tmp_path.glob("*.mp4"))
    assert [v.name for v in videos] == ["000_a_red_fox.mp4", "001_snow_falls_on_a_quiet_town.mp4"]
    cfg = LanDiffConfig.tiny()
    frames = read_mp4(videos[0])
    assert frames.shape == (cfg.video_frames(cfg.max_latent_frames), *cfg.video_size, 3)
    codes = np.load(tmp_path / "000_a_red_fox.npy")
    assert codes.shape == (cfg.tokenizer.num_codes(cfg.max_latent_frames),)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


@pytest.fixture(scope="module")
def tiny_pipe():
    return LanDiff.random(LanDiffConfig.tiny())


@pytest.mark.parametrize("prompts, options, message", [
    ([], GenerateOptions(), "non-empty list"),
    (["ok", "  "], GenerateOptions(), "empty prompt"),
    (["ok"], GenerateOptions(num_frames=8), "num_frames=8 is not supported"),
    (["ok"], GenerateOptions(top_k=3, top_p=0.5), "top_k and top_p"),
])
def test_generate_rejects_bad_input_before_compute(tiny_pipe, prompts, options, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipe.generate(prompts, options)


def test_one_prompt_is_a_list_of_one(tiny_pipe):
    """A single string is one prompt, not a list of characters (tests/test_readme.py generates from one)."""
    assert tiny_pipe.check_prompts("A cat.") == ["A cat."]


def test_generate_names_unknown_settings(tiny_pipe):
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['stpes'\].*steps"):
        tiny_pipe.generate("A cat.", stpes=3)


def test_too_little_device_memory_is_refused_before_building(monkeypatch):
    from landiff_jax import pipeline

    cfg = LanDiffConfig.tiny()
    need = pipeline.weight_bytes(cfg)
    assert 1e6 < need < 1e8  # float32 weights of the tiny system: a few MB
    monkeypatch.setattr(pipeline, "device_memory", lambda device: need - 1)
    monkeypatch.setattr(pipeline, "random_params", lambda *a: pytest.fail("built weights"))
    with pytest.raises(ValueError, match=rf"too little memory: the weights alone need {need / 1e6:.1f} MB per device "
                                         "in float32, cpu device 0 has"):
        LanDiff.random(cfg)


def test_generate_rejects_misshaped_codes(tiny_pipe):
    with pytest.raises(ValueError, match="codes have shape"):
        tiny_pipe.generate(["ok"], codes=np.zeros((1, 3), np.int32))
    with pytest.raises(ValueError, match=r"codes have shape \(1, 3\), expected \(1, "):  # the null text: a row each
        tiny_pipe.generate(None, codes=np.zeros((1, 3), np.int32))
    with pytest.raises(ValueError, match="without a prompt"):
        tiny_pipe.generate(None)


def test_e2e_parity(fixtures_dir, torch):
    case = fixtures_dir / E2E_CASE
    meta, _ = load_case(case)
    failed = [c for c in RUNNERS["e2e"](case, meta) if not c.passed]
    assert not failed, failed


def _tree_copy(fixtures_dir, tmp_path) -> Path:
    case = tmp_path / "case"
    shutil.copytree(fixtures_dir / E2E_CASE, case, ignore=shutil.ignore_patterns("io.npz"))
    return case


def test_convert_refuses_corrupted_file_and_leaves_nothing(fixtures_dir, tmp_path):
    case = _tree_copy(fixtures_dir, tmp_path)
    vae_file = case / "ckpts/LanDiff/CogVideoX-2b-sat/vae/3d-vae.pt"
    data = bytearray(vae_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    vae_file.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match=r"checksum mismatch: .*3d-vae\.pt"):
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", out, LanDiffConfig.tiny(), progress=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]


def test_convert_lists_every_missing_file(fixtures_dir, tmp_path):
    case = _tree_copy(fixtures_dir, tmp_path)
    (case / "ckpts/LanDiff/llm/model.safetensors").unlink()
    (case / "flan-t5/spiece.model").unlink()
    with pytest.raises(CheckpointError) as err:
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", tmp_path / "out", LanDiffConfig.tiny(),
                        progress=lambda s: None)
    assert "llm/model.safetensors" in str(err.value) and "flan-t5/spiece.model" in str(err.value)
    assert not (tmp_path / "out").exists()
