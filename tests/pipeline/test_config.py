"""The system config: presets are consistent, disagreements are named, full size builds abstractly."""

import dataclasses

import numpy as np
import pytest
from flax import traverse_util
import flax.linen as nn

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


def test_dit_attention_choice():
    cfg = LanDiffConfig.tiny()
    assert cfg.with_dit_attention("mosaic").dit.attention == "mosaic"
    assert cfg.with_dit_attention(None).dit == cfg.dit
    with pytest.raises(ValueError, match="DiT attention must be one of"):
        cfg.with_dit_attention("flash")


def test_mesh_kernels():
    """On a mesh the Pallas kernels give way: LM decode through XLA, DiT through cuDNN on GPUs."""
    from landiff_jax.pipeline import mesh_kernels

    cfg = LanDiffConfig.tiny()
    gpu, cpu = mesh_kernels(cfg, "gpu"), mesh_kernels(cfg, "cpu")
    assert (gpu.dit.attention, gpu.lm.decode_attention) == ("cudnn", "xla")
    assert (cpu.dit.attention, cpu.lm.decode_attention) == (None, "xla")
    assert mesh_kernels(cfg.with_dit_attention("xla"), "gpu").dit.attention == "xla"
    with pytest.raises(ValueError, match="runs on one device"):
        mesh_kernels(cfg.with_dit_attention("mosaic"), "gpu")


def test_full_size_system_builds_abstractly():
    """Every component at the released sizes, shapes only (no memory): the converters' manifests
    are checked per component; here the whole system must fit together."""
    params = abstract_params(LanDiffConfig.full().with_dtype("bfloat16"))
    counts = {name: sum(int(np.prod(v.shape)) for v in traverse_util.flatten_dict(nn.meta.unbox(tree)).values())
              for name, tree in params.items()}
    assert counts["lm"] == 2_049_321_984  # the released llm/model.safetensors
    assert counts["t5_lm"] == counts["t5_dit"] > 4.7e9
    assert 2.5e9 < counts["diffusion"] < 3.0e9
