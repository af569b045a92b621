"""The 3d-vae.pt key table: full-size coverage against the manifest, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from landiff_jax.convert import ConversionError
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.convert import convert_params, load_vae
from landiff_jax.vae.original import vae_config


def stand_ins(entries) -> dict[str, np.ndarray]:
    """Zero-size-in-memory arrays of the given shapes (broadcast views of one scalar)."""
    return {e["key"]: np.broadcast_to(np.zeros((), np.float32), tuple(e["shape"])) for e in entries}


def test_full_size_table_covers_manifest(fixtures_dir):
    manifest = json.loads((fixtures_dir / "manifests" / "cogvideox_3d_vae_state_dict.json").read_text())
    cfg = vae_config(manifest)
    assert cfg == VAEConfig.full()
    state_dict = stand_ins(manifest["keys"])
    state_dict["loss.discriminator.blocks.0.net.0.conv.weight"] = np.zeros((2, 2), np.float32)
    params, report = convert_params(state_dict, cfg)
    assert report.used == manifest["num_keys"] == 436
    assert report.ignored == {"loss": 1}
    assert sum(a.size for a in _leaves(params)) == manifest["num_parameters"]


def _leaves(tree):
    return [v for sub in tree.values() for v in (_leaves(sub) if isinstance(sub, dict) else [sub])]


@pytest.fixture(scope="module")
def tiny_state_dict(fixtures_dir, torch):
    case = fixtures_dir / "vae" / "enc_dec_17f_16x24"
    meta = json.loads((case / "meta.json").read_text())
    sd = torch.load(case / "3d-vae.pt", map_location="cpu", weights_only=True)["state_dict"]
    return {k: v.numpy() for k, v in sd.items()}, vae_config(meta["config"]), case


def test_loss_keys_ignored_and_counted(tiny_state_dict):
    sd, cfg, case = tiny_state_dict
    _, _, report = load_vae(case / "3d-vae.pt", cfg)
    assert report.ignored == {"loss": 5}
    assert report.used == len([k for k in sd if not k.startswith("loss")])


def test_misshaped_key_raises_naming_it(tiny_state_dict):
    sd, cfg, _ = tiny_state_dict
    key = "decoder.up.2.block.0.conv1.conv.weight"
    bad = dict(sd, **{key: np.zeros((1, 2, 3, 3, 3), np.float32)})
    with pytest.raises(ConversionError, match=key.replace(".", r"\.")):
        convert_params(bad, cfg)


def test_unexpected_and_missing_keys_raise_naming_them(tiny_state_dict):
    sd, cfg, _ = tiny_state_dict
    bad = dict(sd, **{"decoder.up.0.attn.0.q.weight": np.zeros((4, 4), np.float32)})
    del bad["encoder.norm_out.bias"]
    with pytest.raises(ConversionError) as info:
        convert_params(bad, cfg)
    message = str(info.value)
    assert "unexpected key 'decoder.up.0.attn.0.q.weight'" in message
    assert "missing key 'encoder.norm_out.bias'" in message


def test_config_from_original_reads_fixture(tiny_state_dict):
    _, cfg, _ = tiny_state_dict
    assert (cfg.ch, cfg.ch_mult, cfg.num_res_blocks, cfg.z_channels) == (32, (1, 1, 1, 1), 1, 4)
    assert cfg.scale_factor == 1.15258426
