"""Tokenizer converter: full-size coverage of the manifest (shapes only), Theia sources, bad keys."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from landiff_jax.convert import CheckpointError, ConversionError
from landiff_jax.tokenizer import TokenizerConfig, abstract_params, api
from landiff_jax.tokenizer.convert import (
    convert_params,
    load_tokenizer,
    tokenizer_rules,
)
from landiff_jax.tokenizer.model import VideoVQ

_VOID = np.dtype([])  # itemsize 0: stand-ins of any shape take no memory


def _standin(shape):
    return np.broadcast_to(np.zeros((), _VOID), tuple(shape))


def _manifest(fixtures_dir):
    return json.loads((fixtures_dir / "manifests" / "tokenizer_model_safetensors.json").read_text())["keys"]


def _zero_size(config, theia):
    abstract = abstract_params(config, theia=theia)
    return abstract, jax.tree.map(lambda s: _standin(s.shape), nn.meta.unbox(abstract))


@pytest.mark.parametrize("theia", [False, True])
def test_full_size_manifest_coverage(fixtures_dir, theia):
    """Every released key (and, with Theia, every feature_extractor key) maps to a parameter of
    the right shape; the unused buffers and translator heads are ignored and counted."""
    entries = _manifest(fixtures_dir)
    state = {e["key"]: _standin(e["shape"]) for e in entries if theia or e["in_released_file"]}
    config = TokenizerConfig.full()
    abstract, zero_size = _zero_size(config, theia)
    params, report = convert_params(state, config, theia=theia, abstract=zero_size)
    assert jax.tree.map(lambda a: a.shape, params) == jax.tree.map(lambda s: s.shape, nn.meta.unbox(abstract))
    ignored = report.ignored
    assert ignored["mean"] == ignored["std"] == ignored["quantizer._codebook.embed_avg"] == 1
    if theia:
        assert ignored["feature_extractor.model.translator."] == sum("translator" in e["key"] for e in entries)
    assert report.used + sum(ignored.values()) == len(state)
    assert report.used == sum(len(r.key_list) for r in tokenizer_rules(config, theia=theia))
    # every parameter carries logical axis names
    specs = jax.tree.leaves(nn.get_partition_spec(abstract), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert specs and all(len(s) > 0 for s in specs)


def test_diffusion_prefix(fixtures_dir):
    """The diffusion checkpoint's tokenizer copy: same table under the semantic_model prefix."""
    prefix = "model.control_model.diffusion_model.semantic_conditioner.semantic_model.model."
    state = {prefix + e["key"]: _standin(e["shape"]) for e in _manifest(fixtures_dir) if e["in_released_file"]}
    config = TokenizerConfig.full()
    _, zero_size = _zero_size(config, False)
    convert_params(state, config, prefix, abstract=zero_size)
    decode_only = jax.tree.map(lambda s: _standin(s.shape), nn.meta.unbox(abstract_params(config, decode_only=True)))
    params, _ = convert_params(state, config, prefix, decode_only=True, abstract=decode_only)
    assert set(params) == {"quantizer", "decoder"} and set(params["quantizer"]) == {"codebook", "project_out"}
    rules = tokenizer_rules(config, prefix, param_prefix="semantic/")
    assert all(r.param.startswith("semantic/") and all(k.startswith(prefix) for k in r.key_list) for r in rules)


@pytest.fixture(scope="module")
def tiny_state():
    config = TokenizerConfig.tiny()
    rng = np.random.default_rng(0)
    params = nn.meta.unbox(abstract_params(config, theia=True))
    inverse = {}  # build a torch-layout state dict through the table's expected source shapes
    for rule in tokenizer_rules(config, theia=True):
        leaf = params
        for part in rule.param.split("/"):
            leaf = leaf[part]
        shape = leaf.shape[1:] if rule.stacked else leaf.shape
        for key in rule.key_list:
            inverse[key] = rng.standard_normal(rule.transform.source_shape(shape)).astype(np.float32)
    inverse["mean"] = np.zeros(config.mean_std_dim, np.float32)
    inverse["feature_extractor.model.translator.head.weight"] = np.zeros(3, np.float32)
    return config, inverse


def test_bad_keys_are_named(tiny_state):
    config, state = tiny_state
    bad = dict(state)
    bad["decoder.transformer.1.attn.wq.weight"] = np.zeros((3, 64), np.float32)
    bad["encoder.surprise"] = np.zeros(2, np.float32)
    del bad["decoder.ln_post.bias"]
    with pytest.raises(ConversionError) as err:
        convert_params(bad, config)
    message = str(err.value)
    for key in ("decoder.transformer.1.attn.wq.weight", "encoder.surprise", "decoder.ln_post.bias"):
        assert key in message


def test_theia_from_file_or_dir(tmp_path, tiny_state):
    config, state = tiny_state
    core = {k: v for k, v in state.items() if not k.startswith("feature_extractor.")}
    theia = {k[len("feature_extractor.model."):]: v for k, v in state.items() if k.startswith("feature_extractor.")}
    save_file(state, str(tmp_path / "with_theia.safetensors"))
    save_file(core, str(tmp_path / "model.safetensors"))
    (tmp_path / "theia").mkdir()
    save_file(theia, str(tmp_path / "theia" / "model.safetensors"))

    video = np.zeros((1, 1, 64, 64, 3), np.uint8)
    _, from_file, report = load_tokenizer(tmp_path / "with_theia.safetensors", config)
    assert report.ignored["feature_extractor.model.translator."] == 1
    model, from_dir, _ = load_tokenizer(tmp_path / "model.safetensors", config, theia_dir=tmp_path / "theia")
    assert jax.tree.all(jax.tree.map(np.array_equal, from_file, from_dir))
    assert api.encode(from_dir, model.config, video).shape == (1, config.num_codes(1))

    model, decode_only, _ = load_tokenizer(tmp_path / "model.safetensors", config)
    assert "feature_extractor" not in decode_only
    codes = np.zeros((2, config.num_codes(3)), np.int32)
    assert api.decode(decode_only, model.config, codes, 3).shape == (2, 3, *config.image_size, config.output_channels)
    with pytest.raises(ValueError, match="Theia weights"):
        api.encode(decode_only, model.config, video)
    with pytest.raises(CheckpointError, match="already holds Theia"):
        load_tokenizer(tmp_path / "with_theia.safetensors", config, theia_dir=tmp_path / "theia")
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "missing.safetensors", config)


def test_trace_needs_flag(tiny_state):
    config, _ = tiny_state
    features = np.zeros((1, 1, *config.image_size, config.image_channels), np.float32)
    with pytest.raises(ValueError, match="trace=True"):
        jax.eval_shape(lambda: VideoVQ(config).init(jax.random.key(0), features, method=VideoVQ.trace_encode))
