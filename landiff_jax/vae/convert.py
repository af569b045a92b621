"""Converter for CogVideoX's `3d-vae.pt` (`torch.load(...)["state_dict"]`, keys `encoder.*` /
`decoder.*`). Keys starting with `loss` (LPIPS and discriminator weights in the released file)
are ignored, as the original loader does, and counted in the report."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from landiff_jax.convert import Rule, Rules, convert, read_torch
from landiff_jax.convert.table import ConversionReport
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.model import abstract_params

IGNORED_PREFIXES = ("loss",)


def _causal_conv(t: Rules, ours: str, theirs: str) -> None:
    t.conv(f"{ours}/conv", f"{theirs}.conv")


def _spatial_norm(t: Rules, ours: str, theirs: str) -> None:
    t.norm(f"{ours}/norm_layer", f"{theirs}.norm_layer")
    _causal_conv(t, f"{ours}/conv_y", f"{theirs}.conv_y")
    _causal_conv(t, f"{ours}/conv_b", f"{theirs}.conv_b")


def _res_block(t: Rules, ours: str, theirs: str, width_in: int, width_out: int, decoder: bool) -> None:
    norm = (lambda o, th: _spatial_norm(t, o, th)) if decoder else t.norm
    norm(f"{ours}/norm1", f"{theirs}.norm1")
    _causal_conv(t, f"{ours}/conv1", f"{theirs}.conv1")
    norm(f"{ours}/norm2", f"{theirs}.norm2")
    _causal_conv(t, f"{ours}/conv2", f"{theirs}.conv2")
    if width_in != width_out:
        t.conv(f"{ours}/nin_shortcut", f"{theirs}.nin_shortcut")


def rules(cfg: VAEConfig) -> list[Rule]:
    """The whole table: our param path ('encoder/down_0_block_0/conv1/conv/kernel') <- torch key."""
    t = Rules()
    # encoder
    e = "encoder"
    _causal_conv(t, f"{e}/conv_in", f"{e}.conv_in")
    width = cfg.ch
    for i, mult in enumerate(cfg.ch_mult):
        for j in range(cfg.num_res_blocks):
            _res_block(t, f"{e}/down_{i}_block_{j}", f"{e}.down.{i}.block.{j}", width, cfg.ch * mult, False)
            width = cfg.ch * mult
        if i != cfg.num_levels - 1:
            t.conv(f"{e}/down_{i}_downsample/conv", f"{e}.down.{i}.downsample.conv")
    for name in ("block_1", "block_2"):
        _res_block(t, f"{e}/mid_{name}", f"{e}.mid.{name}", width, width, False)
    t.norm(f"{e}/norm_out", f"{e}.norm_out")
    _causal_conv(t, f"{e}/conv_out", f"{e}.conv_out")
    # decoder
    d = "decoder"
    width = cfg.ch * cfg.ch_mult[-1]
    _causal_conv(t, f"{d}/conv_in", f"{d}.conv_in")
    for name in ("block_1", "block_2"):
        _res_block(t, f"{d}/mid_{name}", f"{d}.mid.{name}", width, width, True)
    for i in reversed(range(cfg.num_levels)):
        for j in range(cfg.num_res_blocks + 1):
            _res_block(t, f"{d}/up_{i}_block_{j}", f"{d}.up.{i}.block.{j}", width, cfg.ch * cfg.ch_mult[i], True)
            width = cfg.ch * cfg.ch_mult[i]
        if i != 0:
            t.conv(f"{d}/up_{i}_upsample/conv", f"{d}.up.{i}.upsample.conv")
    _spatial_norm(t, f"{d}/norm_out", f"{d}.norm_out")
    _causal_conv(t, f"{d}/conv_out", f"{d}.conv_out")
    return t.rules


def convert_params(state_dict, cfg: VAEConfig, *, source: str = "3d-vae.pt") -> tuple[dict, ConversionReport]:
    """{torch key: array} -> ({'encoder': ..., 'decoder': ...} as numpy, report). Raises
    ConversionError naming every missing, unexpected or misshaped key."""
    return convert(rules(cfg), state_dict, abstract_params(cfg), ignore_prefixes=IGNORED_PREFIXES, source=source)


def load_vae(path: str | Path, cfg: VAEConfig | None = None) -> tuple[dict, VAEConfig, ConversionReport]:
    """Read and convert a `3d-vae.pt`; params are placed on the default device in
    cfg.param_dtype. `cfg` defaults to the released size."""
    cfg = cfg or VAEConfig.full()
    state_dict = read_torch(path, "state_dict")
    params, report = convert_params(state_dict, cfg, source=str(path))
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a)), params), cfg, report
