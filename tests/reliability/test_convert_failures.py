"""Items 4 and 5 of issue 13 for the conversion: checks before any work, one line per user
error, a lock per --out, temporaries removed on SIGTERM and found by the next run, a tree whose
own CHECKSUM.md5 differs from the published list marked. One real conversion (the session's)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError, read_torch
from landiff_jax.files import Lock
from landiff_jax.release import convert_release
from tests.reliability.conftest import E2E_CASE, e2e_tree

REPO = Path(__file__).resolve().parents[2]


def convert_cli(*args, **popen):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    command = [sys.executable, str(REPO / "tools" / "convert.py"), *args]
    if popen:
        return subprocess.Popen(command, env=env, text=True, **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def tree_args(case: Path, out: Path, *extra):
    return ("--release", str(case / "ckpts/LanDiff"), "--flan_t5", str(case / "flan-t5"),
            "--original_config", str(case / "meta.json"), "--out", str(out), *extra)


def one_line_error(result, rc, text):
    assert result.returncode == rc, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and text in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_stale_temporary_removed_and_tree_marked(converted):
    out, lines = converted
    assert any("removing" in line and ".ckpt.tmp-killed" in line for line in lines)
    assert sorted(p.name for p in out.parent.iterdir()) == ["ckpt"]  # no temporary, no lock left
    differing = [line for line in lines if line.startswith("WARNING:   differs from the published list:")]
    record = json.loads((out / "landiff_config.json").read_text())["checksums"]
    assert record["verified"] and record["list"].endswith("ckpts/LanDiff/CHECKSUM.md5")
    assert len(differing) == len(record["differs_from_published"]) > 0
    assert "llm/model.safetensors" in record["differs_from_published"]


def test_cli_user_error_is_one_line(fixtures_dir, tmp_path):
    case = fixtures_dir / E2E_CASE
    one_line_error(convert_cli(*tree_args(case, tmp_path / "new" / "o", "--checksums", str(tmp_path / "none.md5"))),
                   2, "--checksums file not found")
    assert list(tmp_path.iterdir()) == []


def test_malformed_checksum_list_and_original_config(fixtures_dir, tmp_path):
    case = fixtures_dir / E2E_CASE
    bad = tmp_path / "sums.md5"
    bad.write_text("not a checksum line\n")
    with pytest.raises(CheckpointError, match=r"sums.md5:1: not a '<md5>  <path>' line"):
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", tmp_path / "a" / "out", LanDiffConfig.tiny(),
                        checksum_file=bad, progress=lambda s: None)
    with pytest.raises(CheckpointError, match="the original configuration is not of the expected form"):
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", tmp_path / "a" / "out", {"llm": {}},
                        progress=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sums.md5"]  # the missing parent was removed again


def test_lock_refuses_a_second_conversion(fixtures_dir, tmp_path):
    case = fixtures_dir / E2E_CASE
    out = tmp_path / "out"
    with Lock(out):  # held by this (living) process, as a racing conversion would
        with pytest.raises(FileExistsError, match=r"another process \(pid \d+\) is writing .*out"):
            convert_release(case / "ckpts/LanDiff", case / "flan-t5", out, LanDiffConfig.tiny(), verify=False,
                            progress=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_out_that_cannot_be_created(fixtures_dir, tmp_path):
    case = fixtures_dir / E2E_CASE
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is not a directory"):
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", tmp_path / "file" / "out", LanDiffConfig.tiny())


def test_noverify_still_needs_every_shard(fixtures_dir, tmp_path):
    case = e2e_tree(fixtures_dir, tmp_path / "case")
    shard = case / "ckpts/LanDiff/CogVideoX-2b-sat/t5-v1_1-xxl/model-00002-of-00002.safetensors"
    shard.unlink()
    with pytest.raises(CheckpointError, match=r"(?s)missing:.*model-00002-of-00002"):
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", tmp_path / "out", LanDiffConfig.tiny(),
                        verify=False, progress=lambda s: None)
    assert not (tmp_path / "out").exists()


def test_truncated_safetensors_and_flan_t5_list(fixtures_dir, tmp_path):
    case = e2e_tree(fixtures_dir, tmp_path / "case")
    flan = case / "flan-t5" / "model.safetensors"
    flan_list = tmp_path / "flan.md5"
    flan_list.write_text(f"{'0' * 32}  ./model.safetensors\n")
    with pytest.raises(CheckpointError, match=r"(?s)Flan-T5 verification failed.*checksum mismatch: .*flan-t5/model"):
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", tmp_path / "out", LanDiffConfig.tiny(),
                        flan_t5_checksums=flan_list, progress=lambda s: None)
    flan.write_bytes(flan.read_bytes()[:-16])  # no md5 list: the size its header declares
    with pytest.raises(CheckpointError, match=r"(?s)wrong size:.*model.safetensors: \d+ bytes, its header declares"):
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", tmp_path / "out", LanDiffConfig.tiny(),
                        progress=lambda s: None)


def test_wrong_pt_structure_is_one_line(tmp_path):
    import torch

    path = tmp_path / "3d-vae.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match=r"3d-vae.pt: expected a dict with key 'state_dict', found list"):
        read_torch(path, "state_dict")


def test_full_disk_is_one_line(fixtures_dir, small_disk):
    case = fixtures_dir / E2E_CASE
    with pytest.raises(CheckpointError, match=r"not enough space for .*out: the converted parameters need"):
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", small_disk / "out",
                        json.loads((case / "meta.json").read_text())["config"], verify=False, progress=lambda s: None)
    assert list(small_disk.iterdir()) == []


def convert_into(case: Path, out: Path):
    config = json.loads((case / "meta.json").read_text())["config"]
    convert_release(case / "ckpts/LanDiff", case / "flan-t5", out, config, verify=False, progress=lambda s: None)


def test_disk_filling_during_the_write_prints_nothing_of_orbax(fixtures_dir, small_disk, monkeypatch, capfd,
                                                               caplog, quiet_mode):
    from landiff_jax import release

    monkeypatch.setattr(release, "check_free_space", lambda out, needed: None)  # fill up inside orbax's write
    with pytest.raises(CheckpointError, match=r"no space left on device writing .*out"):
        convert_into(fixtures_dir / E2E_CASE, small_disk / "out")
    assert capfd.readouterr().err == "" and not caplog.records  # orbax logs ERROR records on its threads
    assert list(small_disk.iterdir()) == []


def test_failed_save_output_held_back_and_successful_save_output_shown(fixtures_dir, tmp_path, monkeypatch, capfd,
                                                                       caplog, quiet_mode):
    """Without root (no tmpfs): a save that fails as orbax does on a full disk, noise included."""
    import errno

    import orbax.checkpoint as ocp
    from absl import logging

    def failing_save(self, path, *args, **kwargs):
        logging.error("_SignalingThread.run() raised an exception: RESOURCE_EXHAUSTED")
        print("Traceback (most recent call last):\nRuntimeError: Event loop is closed", file=sys.stderr)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(ocp.PyTreeCheckpointer, "save", failing_save)
        with pytest.raises(CheckpointError, match=r"no space left on device writing .*out"):
            convert_into(fixtures_dir / E2E_CASE, tmp_path / "out")
    assert capfd.readouterr().err == "" and not caplog.records
    assert list(tmp_path.iterdir()) == []

    from landiff_jax.checkpoint import storage_output_held

    with storage_output_held():
        logging.warning("kept warning")
        print("kept print", file=sys.stderr)
    assert "kept print" in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records] == ["kept warning"]


def test_sigterm_removes_the_temporary_directory(fixtures_dir, tmp_path):
    case = fixtures_dir / E2E_CASE
    out = tmp_path / "out"
    proc = convert_cli(*tree_args(case, out, "--noverify"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if line.startswith("[1/6]"):  # the temporary directory exists
            break
    assert any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    time.sleep(0.1)
    assert list(tmp_path.iterdir()) == []


def test_every_component_checked_before_any_conversion(fixtures_dir, tmp_path):
    import torch

    case = e2e_tree(fixtures_dir, tmp_path / "case")
    vae_file = case / "ckpts/LanDiff/CogVideoX-2b-sat/vae/3d-vae.pt"  # the last component converted
    state = torch.load(vae_file, weights_only=True)
    keys = sorted(k for k in state["state_dict"] if not k.startswith("loss"))
    dropped, widened = keys[0], keys[1]
    del state["state_dict"][dropped]
    state["state_dict"][widened] = torch.zeros(*state["state_dict"][widened].shape, 2)
    torch.save(state, vae_file)
    lines = []
    with pytest.raises(Exception) as err:
        convert_release(case / "ckpts/LanDiff", case / "flan-t5", tmp_path / "out",
                        json.loads((case / "meta.json").read_text())["config"], verify=False, progress=lines.append)
    assert type(err.value).__name__ == "ConversionError"
    assert f"missing key '{dropped}'" in str(err.value) and f"key '{widened}' has shape" in str(err.value)
    assert "[vae]" in str(err.value) and not any(line.startswith("[1/6]") for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]  # no temporary directory, no lock
