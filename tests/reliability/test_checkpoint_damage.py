"""Found by tools/fault_sweep.py (issue 13), on copies of the shipped checkpoints/tiny: a removed
checksum manifest beside the others' is damage, not an old checkpoint (it loaded flipped bytes
silently); orbax's warnings about a damaged component stay behind our one error; a stored config's
fields are checked against their types, and sizes no model can have are one error, not a traceback."""

import copy
import json
import shutil

import pytest

from landiff_jax import checkpoint
from landiff_jax.cli import DEFAULT_CHECKPOINT
from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError


@pytest.fixture
def ckpt(tmp_path):
    return shutil.copytree(DEFAULT_CHECKPOINT, tmp_path / "ckpt")


def test_a_manifest_removed_beside_the_others_is_an_error(ckpt):
    checkpoint.manifest_path(ckpt / "params" / "diffusion").unlink()
    with pytest.raises(CheckpointError, match=r"component 'diffusion' has no checksum manifest \(diffusion.sha256.json"
                                              r"\) while .*lm.sha256.json.* exist beside it"):
        checkpoint.load_component(ckpt, "diffusion")
    with pytest.raises(CheckpointError, match="component 'diffusion' has no checksum manifest"):
        checkpoint.verify(ckpt)
    for manifest in (ckpt / "params").glob("*.sha256.json"):  # none at all: an older checkpoint, a warning
        manifest.unlink()
    with pytest.warns(UserWarning, match="no checksum manifest"):
        checkpoint.load_component(ckpt, "vae")


def test_orbax_warnings_about_a_damaged_component_stay_behind_the_error(ckpt, capfd, caplog):
    from absl import logging

    from landiff_jax import vae

    (ckpt / "params" / "vae" / "_METADATA").write_text("{oops")
    checkpoint.write_manifest(ckpt / "params" / "vae")  # damage the checksums do not see
    before = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)  # quiet mode, as the tools run
    try:
        abstract = vae.abstract_params(checkpoint.load_config(ckpt).vae, decode_only=True)
        with pytest.raises(CheckpointError, match="component 'vae' cannot be restored"):
            checkpoint.load_component(ckpt, "vae", abstract)
        with pytest.raises(CheckpointError, match="component 'vae'"):  # its metadata alone, before compiling
            checkpoint.check_stored(ckpt, "vae", abstract)
    finally:
        logging.set_verbosity(before)
    assert capfd.readouterr().err == "" and not caplog.records


def test_sizes_no_model_can_have_are_one_error(ckpt):
    from landiff_jax.pipeline import LanDiff

    config = ckpt / checkpoint.CONFIG_FILE
    record = json.loads(config.read_text())
    record["config"]["lm"]["hidden"] = 0
    config.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="landiff_config.json: its sizes describe no model"):
        LanDiff.from_checkpoint(ckpt)


@pytest.mark.parametrize("component, field, value, message", [
    ("lm", "hidden", "abc", "'config.lm.hidden' must be a whole number >= 0, got 'abc'"),
    ("lm", "hidden", -4, "'config.lm.hidden' must be a whole number >= 0"),
    ("lm", "num_layers", None, "'config.lm.num_layers' must not be null"),
    ("lm", "norm_eps", "x", "'config.lm.norm_eps' must be a finite number"),
    ("vae", "dtype", "int8", "'config.vae.dtype' must name a floating-point dtype, got 'int8'"),
    ("lm", "micro_keys", 3, "'config.lm.micro_keys' must be a list"),
])
def test_stored_fields_are_checked_against_their_types(component, field, value, message):
    good = checkpoint.load_config(DEFAULT_CHECKPOINT).to_dict()
    assert LanDiffConfig.from_dict(good) == checkpoint.load_config(DEFAULT_CHECKPOINT)
    bad = copy.deepcopy(good)
    bad["config"][component][field] = value
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LanDiffConfig.from_dict(bad)


def test_damage_is_found_before_loading_and_compiling(ckpt, capsys):
    """The tools verify every component (cheaply) before loading starts and compiling runs beside
    it: a flipped byte took 70 s to report on 2 busy cores, behind the compiles."""
    from landiff_jax import cli

    data = max((p for p in (ckpt / "params" / "lm").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    data.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match="component 'lm' is corrupted"):
        cli.load_model(cli.choose_model(str(ckpt)), "float32", compile_for=object())  # (never reached)
    assert "loading" not in capsys.readouterr().out


def test_stored_shapes_are_checked_before_compiling_starts(ckpt, monkeypatch):
    """A config that disagrees with the stored arrays was reported after the compiles beside the
    restores (60 s on 2 busy cores); the stored metadata is checked first."""
    from landiff_jax.pipeline import CompileFor, LanDiff

    config = ckpt / checkpoint.CONFIG_FILE
    record = json.loads(config.read_text())
    record["config"]["lm"]["num_layers"] += 1
    config.write_text(json.dumps(record))
    compiled = []
    monkeypatch.setattr(LanDiff, "_compile_or_warn", lambda self, *args: compiled.append(args))
    with pytest.raises(CheckpointError, match=r"component 'lm' does not match the checkpoint's config: .* has shape "
                                              r"\(4, .*the config gives \(5, "):
        LanDiff.from_checkpoint(ckpt, compile_for=CompileFor(["a fox"]))
    assert compiled == []
