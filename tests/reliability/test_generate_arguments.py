"""Items 3, 5 and 6 of issue 13 for tools/generate.py: every argument is checked before any
weight is read (in-process, `check_arguments`), and a usage error is one line plus the hint
--help, exit 2, no traceback and no output directory (as a user runs it)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from absl import flags

from landiff_jax import cli
from landiff_jax.config import LanDiffConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generate(tool_module):
    return tool_module("generate")


def check(generate, tmp_path, *args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["generate.py", "--random_weights", "--preset", "tiny", "--output_dir", str(tmp_path / "out"), *args])
    return generate.check_arguments()


def codes_file(tmp_path, array):
    path = tmp_path / "codes.npy"
    np.save(path, array, allow_pickle=True)
    return str(path)


TINY = LanDiffConfig.tiny()
N = TINY.tokenizer.num_codes(TINY.max_latent_frames)
V = TINY.tokenizer.codebook_size


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], r"steps must be in \[2, 999\]"),
    (["--temperature", "nan"], "temperature must be a finite number"),
    (["--temperature", "0"], "temperature must be > 0"),
    (["--top_p", "inf"], "top_p must be a finite number"),
    (["--top_p", "1.5"], r"top_p must be in \(0, 1\]"),
    (["--lm_guidance", "nan"], "lm_guidance must be a finite"),
    (["--dit_guidance", "inf"], "dit_guidance must be a finite"),
    (["--dit_guidance_exp", "-inf"], "dit_guidance_exp must be a finite"),
    (["--motion_score", "nan"], "motion_score must be a finite"),
    (["--seed", "-1"], "seed must be in"),
    (["--seed", str(2**40)], "seed must be in"),
    (["--num_frames", "8"], "num_frames=8 is not supported"),
    (["--prompt", "ok", "--prompt", "   "], "--prompt number 2 is empty"),
    (["--dit_attention", "mosaic"], "needs a Hopper GPU"),
    (["--codes", "/nonexistent/codes.npy"], "--codes file not found"),
])
def test_flag_errors(generate, tmp_path, args, message):
    with pytest.raises(cli.UsageError, match=message):
        check(generate, tmp_path, *args)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "has no prompts"),
    (b"  \n\t\n", "has no prompts"),
    (b"\xff\xfe a fox\n", "is not UTF-8 text"),
])
def test_prompts_file_errors(generate, tmp_path, content, message):
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    with pytest.raises(cli.UsageError, match=message):
        check(generate, tmp_path, "--prompts_file", str(path))


@pytest.mark.parametrize("make, message", [
    (lambda: np.zeros((1, N), np.float32), "codes must be integers, got dtype float32"),
    (lambda: np.full((1, N), np.nan), "codes must be integers"),
    (lambda: np.zeros((1, N + 1), np.int64), r"codes have shape \(1, %d\), expected \(1, %d\)" % (N + 1, N)),
    (lambda: np.zeros((2, N), np.int64), r"expected \(1, %d\) for 1 prompt" % N),
    (lambda: np.full((1, N), V), r"codes must lie in \[0, %d\)" % V),
    (lambda: np.full((1, N), -1), "codes must lie in"),
    (lambda: np.array([{"a": 1}], dtype=object), "not a .npy array file"),
])
def test_codes_errors(generate, tmp_path, make, message):
    with pytest.raises(cli.UsageError, match=message):
        check(generate, tmp_path, "--prompt", "a fox", "--codes", codes_file(tmp_path, make()))


def test_good_arguments_and_codes(generate, tmp_path):
    codes = np.arange(2 * N).reshape(2, N) % V
    prompts, cfg, options, checked = check(generate, tmp_path, "--prompt", "a", "--prompt", "b", "--seed", "7",
                                           "--codes", codes_file(tmp_path, codes.astype(np.int16)))
    assert prompts == ["a", "b"] and options.seed == 7 and checked.dtype == np.int32
    np.testing.assert_array_equal(checked, codes)
    assert not (tmp_path / "out").exists()  # made only when a video is written


def test_usage_error_is_one_line(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    out = tmp_path / "new" / "out"
    result = subprocess.run([sys.executable, str(REPO / "tools" / "generate.py"), "--random_weights", "--steps", "-3",
                             "--output_dir", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["generate.py: error: steps must be in [2, 999], got -3 (see --help)"]
    assert "Traceback" not in result.stdout + result.stderr and not (tmp_path / "new").exists()
