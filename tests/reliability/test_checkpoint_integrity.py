"""Item 2 of issue 13: corruption of a converted checkpoint is detected at load (cheaply by
default, fully on request), restored shapes are checked against the config, naming the component."""

import json
import shutil

import jax
import numpy as np
import pytest

from landiff_jax import checkpoint
from landiff_jax.convert.io import CheckpointError


@pytest.fixture
def copy(converted, tmp_path):
    return shutil.copytree(converted[0], tmp_path / "ckpt")


def largest_data_file(directory):
    return max((p for p in (directory / "params" / "diffusion").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)


def flip_bytes(path, count=8):
    data = bytearray(path.read_bytes())
    for i in range(count):
        data[len(data) // 2 + i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifests_are_written(converted):
    out, _ = converted
    for name in checkpoint.COMPONENTS:
        manifest = json.loads(checkpoint.manifest_path(out / "params" / name).read_text())
        assert manifest and all(len(v) == 2 for v in manifest.values())
    checkpoint.verify(out, "full")


@pytest.mark.parametrize("level", ["cheap", "full"])
def test_flipped_bytes_in_a_data_file_are_found(copy, level):
    flip_bytes(largest_data_file(copy))
    with pytest.raises(CheckpointError, match="component 'diffusion' is corrupted.*differs from what was written"):
        checkpoint.load_component(copy, "diffusion", verify=level)
    checkpoint.load_component(copy, "vae", verify=level)  # the others still load


def test_truncated_and_extra_files_are_found(copy):
    data = largest_data_file(copy)
    data.write_bytes(data.read_bytes()[:-10])
    (copy / "params" / "lm" / "stray").write_text("x")
    with pytest.raises(CheckpointError, match=r"'diffusion' is corrupted.*bytes, \d+ were written"):
        checkpoint.load_component(copy, "diffusion")
    with pytest.raises(CheckpointError, match="'lm' is corrupted.*unexpected file stray"):
        checkpoint.load_component(copy, "lm")


def test_restored_shapes_are_checked_against_the_config(converted):
    out, _ = converted
    cfg = checkpoint.load_config(out)
    from landiff_jax import vae

    abstract = vae.abstract_params(cfg.vae, decode_only=True)
    path, leaf = jax.tree_util.tree_leaves_with_path(abstract)[0]
    wrong = jax.tree_util.tree_map_with_path(
        lambda p, x: jax.ShapeDtypeStruct((*x.shape[:-1], x.shape[-1] + 1), x.dtype) if p == path else x, abstract)
    with pytest.raises(CheckpointError, match=r"component 'vae' does not match the checkpoint's config: .* has shape"):
        checkpoint.load_component(out, "vae", wrong)
    import flax.linen as nn

    restored = checkpoint.load_component(out, "vae", abstract)
    shapes = lambda tree: [tuple(np.shape(x)) for x in jax.tree.leaves(tree)]  # noqa: E731
    assert shapes(restored) == shapes(nn.meta.unbox(abstract))


def test_generate_refuses_a_corrupted_checkpoint_in_one_line(copy, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    flip_bytes(largest_data_file(copy))
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(repo))
    result = subprocess.run([sys.executable, str(repo / "tools" / "generate.py"), "--checkpoint", str(copy),
                             "--prompt", "a fox", "--output_dir", str(tmp_path / "videos")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "component 'diffusion' is corrupted" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "videos").exists()


@pytest.mark.slow
def test_generate_refuses_a_non_finite_video(copy, tmp_path):
    """NaN weights with valid checksums (as a numerical failure would give): exit 1, no video."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    vae_params = checkpoint.load_component(copy, "vae")
    poisoned = jax.tree.map(lambda a: np.full_like(a, np.nan), vae_params)
    shutil.rmtree(copy / "params" / "vae")
    checkpoint.save_component(copy, "vae", poisoned)
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(repo))
    result = subprocess.run([sys.executable, str(repo / "tools" / "generate.py"), "--checkpoint", str(copy),
                             "--prompt", "a fox", "--steps", "2", "--output_dir", str(tmp_path / "videos")], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "non-finite values" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "videos").glob("*.mp4")) if (tmp_path / "videos").exists() else True
