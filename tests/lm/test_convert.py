"""LM converter: full-size coverage against the manifest (shapes only) and bad-key errors."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from landiff_jax.convert import ConversionError, read_safetensors
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.convert import convert_params, lm_rules
from landiff_jax.lm.model import abstract_params
from landiff_jax.lm.original import lm_config

_VOID = np.dtype([])  # itemsize 0: stand-ins of any shape take no memory


def _standin(shape):
    return np.broadcast_to(np.zeros((), _VOID), tuple(shape))


def test_full_size_coverage_against_manifest(fixtures_dir):
    manifest = json.loads((fixtures_dir / "manifests" / "llm_model_safetensors.json").read_text())
    released = {e["key"]: tuple(e["shape"]) for e in manifest["keys"] if e["in_released_file"]}
    assert len(released) == manifest["num_keys_in_released_file"] == 185
    cfg = LMConfig.full()
    abstract = abstract_params(cfg)
    shapes = nn.meta.unbox(abstract)
    params, report = convert_params({k: _standin(s) for k, s in released.items()}, cfg,
                                target=jax.tree.map(lambda s: _standin(s.shape), shapes))
    assert report.used == 185
    assert jax.tree.map(np.shape, params) == jax.tree.map(lambda s: s.shape, shapes)
    n_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    assert n_params == manifest["num_params_in_released_file"]
    assert len(lm_rules(cfg)) == len(jax.tree.leaves(shapes))
    specs = jax.tree.leaves(nn.get_partition_spec(abstract), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert specs and all(len(s) > 0 for s in specs)


@pytest.fixture(scope="module")
def tiny_case(fixtures_dir):
    case = fixtures_dir / "lm" / "one_group_cfg6p5"
    meta = json.loads((case / "meta.json").read_text())
    return lm_config(meta["config"], text_dim=32), read_safetensors(case / "model.safetensors")


def test_misshaped_key_is_named(tiny_case):
    cfg, state = tiny_case
    bad = dict(state, **{"transformer.blocks.1.wqkv.weight": np.zeros((3 * cfg.hidden + 1, cfg.hidden), np.float32)})
    with pytest.raises(ConversionError, match=r"transformer\.blocks\.1\.wqkv\.weight"):
        convert_params(bad, cfg)


def test_unexpected_and_missing_keys_are_named(tiny_case):
    cfg, state = tiny_case
    bad = {k: v for k, v in state.items() if k != "transformer.head.weight"}
    bad["tokenizer.tokenizer.quantizer.project_in.weight"] = np.zeros((8, 32), np.float32)
    with pytest.raises(ConversionError) as err:
        convert_params(bad, cfg)
    assert "unexpected key 'tokenizer.tokenizer.quantizer.project_in.weight'" in str(err.value)
    assert "missing key 'transformer.head.weight'" in str(err.value)
