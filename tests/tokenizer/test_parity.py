"""Fixture parity: every public tokenizer and theia case through the real runner, and the
tokenizer decode inside the end-to-end and DiT cases (released-tree and diffusion-checkpoint copies)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from landiff_jax.convert import read_torch
from landiff_jax.parity import RUNNERS, compare, load_case, tolerance_for
from landiff_jax.tokenizer import VideoVQ, api
from landiff_jax.tokenizer.convert import convert_params, load_tokenizer
from landiff_jax.tokenizer.original import (
    tokenizer_config,
    tokenizer_config_from_overrides,
)


def _cases(root, component):
    return sorted(p.parent for p in root.glob(f"{component}/*/meta.json"))


@pytest.mark.parametrize("component", ["tokenizer", "theia"])
def test_public_cases_pass(fixtures_dir, component):
    cases = _cases(fixtures_dir, component)
    assert len(cases) >= 2, f"expected the public {component} cases under {fixtures_dir / component}"
    for case in cases:
        checks = RUNNERS[component](case, json.loads((case / "meta.json").read_text()))
        failed = [c for c in checks if not c.passed]
        assert checks and not failed, f"{case.name}: {failed}"
    must = {"tokenizer": {"indices", "decoded", "mask_encoder", "mask_decoder", "rope_freqs_cis"},
            "theia": {"features", "indices_from_video", "vit_pos_embed_interpolated"}}[component]
    assert must <= {c.name for c in checks}


def _check_decode(model, params, meta, arrays, codes_name):
    codes = arrays[codes_name].reshape(1, -1)
    features = np.moveaxis(np.asarray(api.decode(params, model.config, codes)), -1, 2)  # [1 t c h w]
    check = compare("tokenizer_features", features, arrays["tokenizer_features"],
                    tolerance_for(meta["tolerance"], "tokenizer_features"))
    assert check.passed, check


def test_e2e_tokenizer_decode(fixtures_dir):
    """ckpts/LanDiff/tokenizer/model.safetensors decodes the LM's codes like index_to_feature."""
    case = _cases(fixtures_dir, "e2e")[0]
    meta, arrays = load_case(case)
    config = tokenizer_config(meta["config"]["tokenizer"])
    assert config == tokenizer_config_from_overrides(meta["config"]["tokenizer_build_tokenizer_overrides"],
                                                          theia=None)
    model, params, _ = load_tokenizer(case / "ckpts" / "LanDiff" / "tokenizer" / "model.safetensors", config)
    _check_decode(model, params, meta, arrays, "semantic_token")


def test_dit_tokenizer_copy_decodes(fixtures_dir, torch):
    """The diffusion checkpoint's tokenizer copy, converted under its prefix (full and decode-only)."""
    case = _cases(fixtures_dir, "dit")[0]
    meta, arrays = load_case(case)
    config = tokenizer_config_from_overrides(meta["config"]["tokenizer_build_tokenizer_overrides"])
    prefix = "model.control_model.diffusion_model.semantic_conditioner.semantic_model.model."
    state = read_torch(case / "diffusion" / "1" / "mp_rank_00_model_states.pt", "module")
    state = {k: v for k, v in state.items() if k.startswith(prefix)}
    params, _ = convert_params(state, config, prefix)
    decoder_params, report = convert_params(state, config, prefix, decode_only=True)
    assert "encoder" not in decoder_params and report.ignored[prefix + "encoder."] > 0
    for p in (params, decoder_params):
        _check_decode(VideoVQ(config), p, meta, arrays, "semantic_tokens")
