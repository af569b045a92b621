"""The converted checkpoint stores our own config (one JSON, parsed once), older checkpoints are
migrated or refused with how to re-convert, and a job reads only the parameters it uses."""

import json

import jax
import numpy as np
import pytest

from landiff_jax import checkpoint
from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError


def test_config_round_trip(tmp_path):
    cfg = LanDiffConfig.tiny()
    checkpoint.write_config(tmp_path, cfg, converted_from="somewhere")
    assert checkpoint.load_config(tmp_path) == cfg
    assert checkpoint.load_config(tmp_path, "bfloat16") == cfg.with_dtype("bfloat16")


def test_old_checkpoints_migrated_or_refused(tmp_path):
    path = tmp_path / checkpoint.CONFIG_FILE
    path.write_text(json.dumps({"preset": "tiny", "dtype": "bfloat16"}))  # written by the previous version
    assert checkpoint.load_config(tmp_path) == LanDiffConfig.tiny().with_dtype("bfloat16")
    path.write_text(json.dumps({"original": {}, "t5_lm": {}, "t5_dit": {}, "dtype": "float32"}))
    with pytest.raises(CheckpointError, match="older landiff-jax.*re-convert.*tools/convert.py"):
        checkpoint.load_config(tmp_path)
    path.write_text(json.dumps({**LanDiffConfig.tiny().to_dict(), "version": 7}))
    with pytest.raises(CheckpointError, match="version 7 is not supported.*re-convert"):
        checkpoint.load_config(tmp_path)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load_config(tmp_path)


def test_partial_load_reads_only_the_given_subtree(tmp_path):
    tree = {"encoder": {"w": np.ones((2, 3), np.float32)}, "decoder": {"w": np.arange(4, dtype=np.float32)}}
    checkpoint.save_component(tmp_path, "vae", tree)
    only = checkpoint.load_component(tmp_path, "vae", {"decoder": {"w": jax.ShapeDtypeStruct((4,), np.float32)}})
    assert set(only) == {"decoder"}
    np.testing.assert_array_equal(only["decoder"]["w"], tree["decoder"]["w"])
    whole = checkpoint.load_component(tmp_path, "vae")
    assert set(whole) == {"encoder", "decoder"}
    with pytest.raises(CheckpointError, match="missing component 'lm'"):
        checkpoint.load_component(tmp_path, "lm")


def test_parameters_stored_uncompressed_unless_asked(tmp_path):
    """Uncompressed by default (a restore is CPU-bound, and decompressing doubles its CPU time);
    `compress=True` (tools/convert.py --compress, train_tiny's shipped checkpoint) stores zstd.
    Both read back the same arrays."""
    tree = {"w": np.zeros((256, 1024), np.float32), "b": np.arange(8, dtype=np.float32)}
    sizes = {}
    for compress in (False, True):
        directory = tmp_path / str(compress)
        checkpoint.save_component(directory, "vae", tree, compress=compress)
        sizes[compress] = sum(f.stat().st_size for f in (directory / "params" / "vae").rglob("*") if f.is_file())
        back = checkpoint.load_component(directory, "vae", jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree))
        for name in tree:
            np.testing.assert_array_equal(np.asarray(back[name]), tree[name])
    assert sizes[False] > 256 * 1024 * 4 > 100 * sizes[True]  # 1 MiB of zeros: stored whole vs compressed away
