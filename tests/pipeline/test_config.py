"""The system config: presets are consistent, disagreements are named, full size builds abstractly."""

import dataclasses
import json

import flax.linen as nn
import numpy as np
import pytest
from flax import traverse_util

from landiff_jax.config import LanDiffConfig
from landiff_jax.pipeline import abstract_params


def test_check_names_every_disagreement():
    cfg = LanDiffConfig.tiny()
    bad = dataclasses.replace(cfg, lm=cfg.lm.replace(codebook_size=65),
                              vae=dataclasses.replace(cfg.vae, z_channels=8))
    with pytest.raises(ValueError) as err:
        bad.check()
    assert "lm.codebook_size=65 but tokenizer.codebook_size=64" in str(err.value)
    assert "dit.in_channels=4 but vae.z_channels=8" in str(err.value)


def test_frame_counts():
    cfg = LanDiffConfig.full()
    assert cfg.latent_frames(None) == 13 and cfg.latent_frames(49) == 13 and cfg.latent_frames(9) == 3
    with pytest.raises(ValueError, match="choose one of \\[9, 17, 25, 33, 41, 49\\]"):
        cfg.latent_frames(45)


def test_streamed_lengths_and_chunks():
    """Long videos: chunks of C = 13 latent frames, each after the first keeping P = 7 (the
    released yaml's comment: "prefix_length=7, gen 1+4*6=25 frames"); tiny: 1 of 3."""
    cfg = LanDiffConfig.full()
    assert (cfg.stream_prefix, cfg.stream_step) == (7, 6)
    assert cfg.streamed_frames() == [73, 97, 121] and cfg.streamed_frames(49) == [73, 97, 121, 145, 169, 193]
    assert cfg.latent_frames(193, streaming=True) == 49
    assert cfg.stream_chunks(49) == [(0, 0)] + [(6 * k, 7) for k in range(1, 7)]  # 13 + 6·6 latent frames
    with pytest.raises(ValueError, match=r"num_frames=193 is not supported; choose one of \[9, .*, 49\]$"):
        cfg.latent_frames(193)  # only where streaming is asked for
    with pytest.raises(ValueError, match=r"or streamed: 73, 97, 121, \.\.\."):
        cfg.latent_frames(101, streaming=True)
    tiny = LanDiffConfig.tiny()
    assert (tiny.stream_prefix, tiny.streamed_frames()) == (1, [17, 25, 33])
    odd = dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, stream_prefix_frames=5))
    assert odd.check().stream_step == 8 and odd.streamed_frames() == [81, 113, 145]
    with pytest.raises(ValueError, match="stream_prefix_frames=13 must be < dit.latent_frames=13"):
        dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, stream_prefix_frames=13)).check()


def test_config_dict_round_trip_and_errors():
    """A converted checkpoint stores LanDiffConfig.to_dict(): JSON-able, exact round trip; an
    unknown version or field is refused by name."""
    for cfg in (LanDiffConfig.tiny(), LanDiffConfig.full().with_dtype("bfloat16")):
        data = json.loads(json.dumps(cfg.to_dict()))
        assert LanDiffConfig.from_dict(data) == cfg
    data = LanDiffConfig.tiny().to_dict()
    with pytest.raises(ValueError, match="version 99 is not supported"):
        LanDiffConfig.from_dict({**data, "version": 99})
    bad = json.loads(json.dumps(data))
    bad["config"]["lm"]["num_experts"] = 8
    with pytest.raises(ValueError, match=r"config.lm' \(LMConfig\) has unknown field\(s\) \['num_experts'\]"):
        LanDiffConfig.from_dict(bad)
    del bad["config"]["lm"]["num_experts"], bad["config"]["vae"]["ch"]
    with pytest.raises(ValueError, match=r"lacks \['ch'\]"):
        LanDiffConfig.from_dict(bad)
    older = json.loads(json.dumps(data))  # written before these were fields: their defaults
    del older["config"]["sampler"]["stream_prefix_frames"], older["config"]["dit"]["scan_unroll"]
    assert LanDiffConfig.from_dict(older) == LanDiffConfig.tiny()


def _count(tree) -> int:
    return sum(int(np.prod(v.shape)) for v in traverse_util.flatten_dict(nn.meta.unbox(tree)).values())


def test_generate_reads_only_what_it_uses():
    """No standalone tokenizer, no encoder half of the DiT's tokenizer copy, no VAE encoder."""
    cfg = LanDiffConfig.full().with_dtype("bfloat16")
    every, generate = abstract_params(cfg, "all"), abstract_params(cfg, "generate")
    assert set(every) - set(generate) == {"tokenizer"}
    assert set(generate["vae"]) == {"decoder"}
    assert "encoder" not in generate["diffusion"]["tokenizer"] and "encoder" in every["diffusion"]["tokenizer"]
    saved = sum(map(_count, every.values())) - sum(map(_count, generate.values()))
    assert 3.0e8 < saved < 4.0e8, saved
    # reconstruction: generation's without the LM side, plus the tokenizer that encodes videos, Theia included
    reconstruct = abstract_params(cfg, "reconstruct")
    shapes = lambda tree: {k: v.shape for k, v in traverse_util.flatten_dict(nn.meta.unbox(tree)).items()}  # noqa: E731
    assert set(reconstruct) == {"t5_dit", "tokenizer", "diffusion", "vae"}
    assert shapes({name: reconstruct[name] for name in ("t5_dit", "diffusion", "vae")}) == shapes(
        {name: generate[name] for name in ("t5_dit", "diffusion", "vae")})
    assert set(reconstruct["tokenizer"]) == set(every["tokenizer"]) | {"feature_extractor"}


def test_full_size_system_builds_abstractly():
    """Every component at the released sizes, shapes only (no memory): the converters' manifests
    are checked per component; here the whole system must fit together."""
    params = abstract_params(LanDiffConfig.full().with_dtype("bfloat16"), "all")
    counts = {name: _count(tree) for name, tree in params.items()}
    assert counts["lm"] == 2_049_321_984  # the released llm/model.safetensors
    assert counts["t5_lm"] == counts["t5_dit"] > 4.7e9
    assert 2.5e9 < counts["diffusion"] < 3.0e9
