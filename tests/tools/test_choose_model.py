"""cli.choose_model: the model tools/generate.py and tools/demo.py serve (reads configs only)."""

from __future__ import annotations

import pytest

from landiff_jax import cli
from landiff_jax.config import LanDiffConfig


def test_no_flags_take_the_shipped_checkpoint(tmp_path, monkeypatch):
    shipped = tmp_path / "checkpoints" / "tiny"
    shipped.mkdir(parents=True)
    monkeypatch.setattr(cli, "DEFAULT_CHECKPOINT", shipped)
    # an empty folder: its config is read (and refused), so this is the folder chosen
    with pytest.raises(cli.UsageError, match=str(shipped)):
        cli.choose_model()


def test_without_the_shipped_checkpoint_random_tiny_weights_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "DEFAULT_CHECKPOINT", tmp_path / "checkpoints" / "tiny")
    choice = cli.choose_model()
    assert choice.checkpoint is None and choice.cfg == LanDiffConfig.tiny() and choice.source == "tiny"
    assert "RANDOM weights" in choice.warning and "no shipped checkpoints/tiny" in choice.warning


def test_random_weights_of_a_preset():
    choice = cli.choose_model(preset="tiny", random_weights=True)
    assert choice.checkpoint is None and choice.cfg == LanDiffConfig.tiny()
    assert "no shipped" not in choice.warning


@pytest.mark.parametrize("kwargs, message", [
    (dict(checkpoint="ckpt", random_weights=True), "exclude each other"),
    (dict(preset="tiny"), "--config/--preset go with --random_weights"),
    (dict(checkpoint="/nonexistent/ckpt"), "checkpoint directory not found: /nonexistent/ckpt"),
    (dict(config="/nonexistent/config.py", random_weights=True), "/nonexistent/config.py"),
])
def test_bad_choices_are_one_line_usage_errors(kwargs, message):
    with pytest.raises(cli.UsageError, match=message) as error:
        cli.choose_model(**kwargs)
    assert "\n" not in str(error.value)
