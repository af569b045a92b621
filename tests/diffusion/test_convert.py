"""Diffusion converters: full-size coverage against both manifests (shapes only, no memory) and
errors that name bad keys."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from landiff_jax.convert import ConversionError, read_latest, read_torch
from landiff_jax.diffusion.config import DiTConfig
from landiff_jax.diffusion.convert import (
    BASE_PREFIX,
    CONTROL_PREFIX,
    POS_EMBEDDING,
    abstract_params,
    convert_params,
)
from landiff_jax.diffusion.original import dit_config
from landiff_jax.diffusion.pos_embed import full_pos_embedding
from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.tokenizer.original import tokenizer_config_from_overrides

_VOID = np.dtype([])  # itemsize 0: stand-ins of any shape take no memory


def _standin(shape):
    return np.broadcast_to(np.zeros((), _VOID), tuple(shape))


def test_full_size_coverage_against_manifests(fixtures_dir):
    manifests = fixtures_dir / "manifests"
    base_keys = json.loads((manifests / "cogvideox2b_sat_transformer_module.json").read_text())["keys"]
    diffusion_keys = json.loads((manifests / "diffusion_mp_rank_00_module.json").read_text())["certain_keys"]["keys"]
    assert len(base_keys) == 557 and len(diffusion_keys) == 723
    cfg, tokenizer_cfg = DiTConfig.full(), TokenizerConfig.full()
    pos = full_pos_embedding(cfg)  # the one value checked, not just shaped
    standins = lambda keys: {k: pos if k.endswith(POS_EMBEDDING) else _standin(s) for k, s in keys.items()}
    abstract = abstract_params(cfg, tokenizer_cfg)
    shapes = nn.meta.unbox(abstract)
    params, report = convert_params(standins(base_keys), standins(diffusion_keys), cfg, tokenizer_cfg,
                                       target=jax.tree.map(lambda s: _standin(s.shape), shapes))
    assert report.control_keys_from_base == 0
    assert report.conversion.used + sum(report.conversion.ignored.values()) == len(base_keys) + len(diffusion_keys)
    assert jax.tree.map(np.shape, params) == jax.tree.map(lambda s: s.shape, shapes)
    specs = jax.tree.leaves(nn.get_partition_spec(abstract["dit"]),
                            is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert specs and all(len(s) > 0 for s in specs)


@pytest.fixture(scope="module")
def tiny_case(fixtures_dir, torch):
    case = fixtures_dir / "dit" / "public_b"
    meta = json.loads((case / "meta.json").read_text())
    cfg = dit_config(meta["config"])
    tokenizer_cfg = tokenizer_config_from_overrides(meta["config"]["tokenizer_build_tokenizer_overrides"])
    base = read_torch(read_latest(case / "CogVideoX-2b-sat" / "transformer"), "module")
    diffusion = read_torch(read_latest(case / "diffusion"), "module")
    return cfg, tokenizer_cfg, base, diffusion


def test_misshaped_key_is_named(tiny_case):
    cfg, tokenizer_cfg, base, diffusion = tiny_case
    key = CONTROL_PREFIX + "transformer.layers.0.attention.query_key_value.weight"
    bad = dict(diffusion, **{key: np.zeros((3 * cfg.hidden_size + 1, cfg.hidden_size), np.float32)})
    with pytest.raises(ConversionError, match=key.replace(".", r"\.")):
        convert_params(base, bad, cfg, tokenizer_cfg)


def test_unexpected_and_missing_keys_are_named(tiny_case):
    cfg, tokenizer_cfg, base, diffusion = tiny_case
    missing = BASE_PREFIX + "mixins.final_layer.linear.weight"
    bad_base = {k: v for k, v in base.items() if k != missing}
    bad_diffusion = dict(diffusion, **{CONTROL_PREFIX + "mixins.adaln_layer.zero_linears.9.weight": np.zeros((2, 2))})
    with pytest.raises(ConversionError) as err:
        convert_params(bad_base, bad_diffusion, cfg, tokenizer_cfg)
    assert f"missing key '{missing}'" in str(err.value)
    assert f"unexpected key '{CONTROL_PREFIX}mixins.adaln_layer.zero_linears.9.weight'" in str(err.value)


def test_wrong_pos_embedding_is_named(tiny_case):
    cfg, tokenizer_cfg, base, diffusion = tiny_case
    key = CONTROL_PREFIX + POS_EMBEDDING
    with pytest.raises(ConversionError, match="differs from the 3D sincos table"):
        convert_params(base, dict(diffusion, **{key: diffusion[key] + 0.5}), cfg, tokenizer_cfg)


def test_control_branch_falls_back_to_base_copy(tiny_case):
    """Control tensors absent from the diffusion checkpoint keep the base DiT's values."""
    cfg, tokenizer_cfg, base, diffusion = tiny_case
    key = CONTROL_PREFIX + "time_embed.0.weight"
    params, report = convert_params(base, {k: v for k, v in diffusion.items() if k != key}, cfg, tokenizer_cfg)
    assert report.control_keys_from_base == 1
    np.testing.assert_array_equal(params["dit"]["control"]["time_embed"]["fc1"]["kernel"],
                                  base[BASE_PREFIX + "time_embed.0.weight"].T)
