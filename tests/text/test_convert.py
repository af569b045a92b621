"""Converter: full-size XXL coverage (shapes only), and the errors for bad checkpoints."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from landiff_jax.convert import CheckpointError, ConversionError
from landiff_jax.text.config import T5Config
from landiff_jax.text.convert import convert_params, load_t5, t5_rules
from landiff_jax.text.original import t5_config
from landiff_jax.text.t5 import abstract_params

# google/t5-v1_1-xxl and google/flan-t5-xxl config.json (encoder-relevant fields)
XXL_HF_CONFIG = {
    "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "num_heads": 64, "d_ff": 10240, "num_layers": 24,
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
}
_VOID = np.dtype([])  # itemsize 0: stand-ins of any shape take no memory


def hf_encoder_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    """Every key (and shape) of an HF T5EncoderModel state dict with config `c`."""
    d, inner, ff = c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"]
    shapes = {
        "shared.weight": (c["vocab_size"], d),
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
            (c["relative_attention_num_buckets"], c["num_heads"]),
        "encoder.final_layer_norm.weight": (d,),
    }
    for i in range(c["num_layers"]):
        b = f"encoder.block.{i}.layer."
        shapes |= {b + f"0.SelfAttention.{p}.weight": (inner, d) for p in "qkv"}
        shapes |= {b + "0.SelfAttention.o.weight": (d, inner), b + "0.layer_norm.weight": (d,),
                   b + "1.DenseReluDense.wi_0.weight": (ff, d), b + "1.DenseReluDense.wi_1.weight": (ff, d),
                   b + "1.DenseReluDense.wo.weight": (d, ff), b + "1.layer_norm.weight": (d,)}
    return shapes


def _standin(shape):
    return np.broadcast_to(np.zeros((), _VOID), shape)


def _coverage(cfg, state_dict):
    abstract = abstract_params(cfg)
    zero_size = jax.tree.map(lambda s: _standin(s.shape), nn.meta.unbox(abstract))
    params, _ = convert_params(state_dict, cfg, abstract_params=zero_size)
    got = jax.tree.map(lambda a: a.shape, params)
    assert got == jax.tree.map(lambda s: s.shape, nn.meta.unbox(abstract))
    return abstract


def test_xxl_coverage_from_hf_config():
    cfg = t5_config(XXL_HF_CONFIG, dtype=jnp.bfloat16)
    assert cfg == T5Config.xxl(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    shapes = hf_encoder_shapes(XXL_HF_CONFIG)
    abstract = _coverage(cfg, {k: _standin(s) for k, s in shapes.items()})
    n_ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.meta.unbox(abstract)))
    assert n_ours == sum(int(np.prod(s)) for s in shapes.values())  # every HF weight used once
    assert len(t5_rules(cfg)) == len(jax.tree.leaves(nn.meta.unbox(abstract)))
    # every parameter carries logical axis names
    specs = jax.tree.leaves(nn.get_partition_spec(abstract), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert specs and all(len(s) > 0 for s in specs)


def test_xxl_coverage_against_manifest(fixtures_dir):
    """The released engine's T5 keys (from the original code on the meta device): both embedding
    names are present there, tied to one tensor."""
    manifest = json.loads((fixtures_dir / "manifests" / "diffusion_mp_rank_00_module.json").read_text())
    keys = manifest["engine_keys_possibly_present"]["conditioner_t5_xxl_keys"]
    prefix = "conditioner.embedders.0.transformer."
    shapes = {k[len(prefix):]: tuple(s) for k, s in keys.items()}
    state = {k: _standin(s) for k, s in shapes.items()}
    state["encoder.embed_tokens.weight"] = state["shared.weight"]  # tied, as in the model
    _coverage(T5Config.xxl(), state)
    assert {k: s for k, s in shapes.items() if k != "encoder.embed_tokens.weight"} == hf_encoder_shapes(XXL_HF_CONFIG)


SMALL = {**XXL_HF_CONFIG, "vocab_size": 64, "d_model": 8, "d_kv": 4, "num_heads": 3, "d_ff": 12, "num_layers": 2}


@pytest.fixture
def small_state():
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in hf_encoder_shapes(SMALL).items()}


def test_small_converts_and_ignores_decoder(small_state):
    cfg = t5_config(SMALL)
    extra = {"decoder.block.0.layer.0.SelfAttention.q.weight": np.zeros((12, 8), np.float32),
             "lm_head.weight": np.zeros((64, 8), np.float32)}
    params, _ = convert_params(small_state | extra, cfg)
    q = small_state["encoder.block.1.layer.0.SelfAttention.q.weight"]
    np.testing.assert_array_equal(params["layers"]["attention"]["q"]["kernel"][1], q.T)


def test_embedding_alias(small_state):
    cfg = t5_config(SMALL)
    only_alias = dict(small_state)
    only_alias["encoder.embed_tokens.weight"] = only_alias.pop("shared.weight")
    params, _ = convert_params(only_alias, cfg)
    np.testing.assert_array_equal(params["token_embedding"]["embedding"], small_state["shared.weight"])
    both = small_state | {"encoder.embed_tokens.weight": small_state["shared.weight"].copy()}
    convert_params(both, cfg)
    both["encoder.embed_tokens.weight"] = both["encoder.embed_tokens.weight"] + 1
    with pytest.raises(ConversionError, match="encoder.embed_tokens.weight"):
        convert_params(both, cfg)


def test_bad_keys_are_named(small_state):
    cfg = t5_config(SMALL)
    bad = dict(small_state)
    bad["encoder.block.1.layer.1.DenseReluDense.wo.weight"] = np.zeros((12, 8), np.float32)  # transposed
    bad["encoder.block.0.layer.0.SelfAttention.bogus.weight"] = np.zeros((3,), np.float32)
    del bad["encoder.block.0.layer.1.layer_norm.weight"]
    with pytest.raises(ConversionError) as err:
        convert_params(bad, cfg)
    message = str(err.value)
    assert "encoder.block.1.layer.1.DenseReluDense.wo.weight" in message and "(8, 12)" in message
    assert "unexpected key 'encoder.block.0.layer.0.SelfAttention.bogus.weight'" in message
    assert "missing key 'encoder.block.0.layer.1.layer_norm.weight'" in message
    assert len(err.value.problems) == 3


def test_missing_files_are_named(tmp_path, small_state):
    with pytest.raises(CheckpointError, match=str(tmp_path / "config.json")):
        load_t5(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    with pytest.raises(CheckpointError, match=str(tmp_path / "model.safetensors")):
        load_t5(tmp_path)
    save_file(small_state, str(tmp_path / "model.safetensors"))
    cfg, params = load_t5(tmp_path, dtype=jnp.bfloat16)
    assert cfg.param_dtype == jnp.bfloat16 and params["final_norm"]["scale"].dtype == jnp.bfloat16


def test_unsupported_feed_forward_refused():
    with pytest.raises(ValueError, match="feed_forward_proj"):
        t5_config({**SMALL, "feed_forward_proj": "relu", "is_gated_act": False})
