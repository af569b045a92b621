"""Converter for the two diffusion checkpoints, loaded as the original does:

1. `CogVideoX-2b-sat/transformer/<latest>/mp_rank_00_model_states.pt` ['module'], keys
   `model.diffusion_model.*`: the frozen base DiT. It fills the main model, and is also the
   initial copy of the control branch (its first N layers, embeddings, time embedding).
2. `diffusion/<latest>/mp_rank_00_model_states.pt` ['module'], keys
   `model.control_model.diffusion_model.*`: overwrites every control-branch tensor it holds and
   adds the zero linears and the semantic conditioner (upsampler, conv_out, tokenizer copy).

Our params: {'dit': ControlDiT params ('main', 'control'), 'semantic': SemanticCond params,
'tokenizer': VideoVQ params}. Keys handled without a parameter (counted in the report):
`pos_embedding` (the fixed sincos table, checked against the closed form instead), the control
branch's `transformer.final_layernorm` (it runs in the original but its result is discarded),
the tokenizer's unused buffers, and `conditioner.*`, `first_stage_model.*`, `model.main_model.*`
(T5, VAE and frozen-main entries a release may carry; they are loaded from their own files).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping

import numpy as np

from landiff_jax.convert import (
    ConversionError,
    ConversionReport,
    Rule,
    Rules,
    Transform,
    convert,
    read_latest,
    read_torch,
)
from landiff_jax.diffusion.api import abstract_params
from landiff_jax.diffusion.config import DiTConfig
from landiff_jax.diffusion.pos_embed import full_pos_embedding
from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.tokenizer.convert import tokenizer_ignore_prefixes, tokenizer_rules

BASE_PREFIX = "model.diffusion_model."
CONTROL_PREFIX = "model.control_model.diffusion_model."
SEMANTIC_PREFIX = CONTROL_PREFIX + "semantic_conditioner."
TOKENIZER_PREFIX = SEMANTIC_PREFIX + "semantic_model.model."
OUTSIDE_MODEL = ("conditioner.", "first_stage_model.", "model.main_model.")
POS_EMBEDDING = "mixins.pos_embed.pos_embedding"
UNUSED_CONTROL = (CONTROL_PREFIX + "transformer.final_layernorm.",)


def _qkv_kernel(heads: int, head_dim: int) -> Transform:
    """Linear [3d, d] ([q | k | v] thirds) → DenseGeneral kernel [d, 3, heads, head_dim]."""
    return Transform("qkv_kernel", lambda a: a.T.reshape(a.shape[1], 3, heads, head_dim),
                     lambda s: (math.prod(s[1:]), s[0]))


def _reshape(shape: tuple[int, ...]) -> Transform:
    return Transform(f"reshape{shape}", lambda a: a.reshape(shape), lambda s: (math.prod(s),))


def _attention_out(heads: int, head_dim: int) -> Transform:
    """Linear [d, d] → DenseGeneral kernel [heads, head_dim, d]."""
    return Transform("attention_out", lambda a: a.T.reshape(heads, head_dim, a.shape[0]),
                     lambda s: (s[2], s[0] * s[1]))


def branch_rules(cfg: DiTConfig, param_prefix: str, key_prefix: str, is_control: bool) -> list[Rule]:
    """Key table of one branch (main: `model.diffusion_model.`; control: `model.control_model.
    diffusion_model.`) onto params under `param_prefix` ('dit/main/' or 'dit/control/')."""
    h, hd = cfg.num_heads, cfg.head_dim
    n = cfg.control_layers if is_control else cfg.num_layers
    layer, adaln = "transformer.layers.{i}.", "mixins.adaln_layer."
    t = Rules(param_prefix, key_prefix)
    t.dense("time_embed/fc1", "time_embed.0").dense("time_embed/fc2", "time_embed.2")
    t.conv("patch_embed", "mixins.patch_embed.proj").dense("text_proj", "mixins.patch_embed.text_proj")
    # per layer, stacked on the layers axis
    t.dense("layers/adaln", adaln + "adaLN_modulations.{i}.1", n=n)
    t.norm("layers/input_layernorm", layer + "input_layernorm", n=n)
    t.add("layers/attention/qkv/kernel", layer + "attention.query_key_value.weight", _qkv_kernel(h, hd), n=n)
    t.add("layers/attention/qkv/bias", layer + "attention.query_key_value.bias", _reshape((3, h, hd)), n=n)
    t.norm("layers/attention/query_norm", adaln + "query_layernorm_list.{i}", n=n)
    t.norm("layers/attention/key_norm", adaln + "key_layernorm_list.{i}", n=n)
    t.add("layers/attention/dense/kernel", layer + "attention.dense.weight", _attention_out(h, hd), n=n)
    t.add("layers/attention/dense/bias", layer + "attention.dense.bias", n=n)
    t.norm("layers/post_attention_layernorm", layer + "post_attention_layernorm", n=n)
    t.dense("layers/mlp/fc1", layer + "mlp.dense_h_to_4h", n=n)
    t.dense("layers/mlp/fc2", layer + "mlp.dense_4h_to_h", n=n)
    if is_control:
        t.dense("layers/zero_linear", adaln + "zero_linears.{i}", bias=False, n=n)
    else:
        t.norm("final_layernorm", "transformer.final_layernorm")
        t.norm("final_layer/norm_final", "mixins.final_layer.norm_final")
        t.dense("final_layer/adaln", "mixins.final_layer.adaLN_modulation.1")
        t.dense("final_layer/linear", "mixins.final_layer.linear")
    return t.rules


def _resnet_rules(t: Rules, param: str, key: str, in_ch: int, out_ch: int) -> None:
    t.norm(f"{param}/norm1", key + ".norm1").conv(f"{param}/conv1", key + ".conv1")
    t.norm(f"{param}/norm2", key + ".norm2").conv(f"{param}/conv2", key + ".conv2")
    if in_ch != out_ch:
        t.conv(f"{param}/nin_shortcut", key + ".nin_shortcut")


def semantic_rules(cfg: DiTConfig, param_prefix: str = "semantic/") -> list[Rule]:
    """SemanticCond's upsampler (vq_gan_blocks.Decoder) and conv_out."""
    sem = cfg.semantic
    t = Rules(param_prefix, SEMANTIC_PREFIX)
    levels = len(sem.ch_mult)
    channels = sem.level_channels(levels - 1)
    up = ("upsample_model/", "upsample_model.")
    t.conv(up[0] + "conv_in", up[1] + "conv_in")
    _resnet_rules(t, up[0] + "mid_block_1", up[1] + "mid.block_1", channels, channels)
    _resnet_rules(t, up[0] + "mid_block_2", up[1] + "mid.block_2", channels, channels)
    for level in reversed(range(levels)):
        out = sem.level_channels(level)
        for j in range(sem.num_res_blocks + 1):
            _resnet_rules(t, f"{up[0]}up_{level}_block_{j}", f"{up[1]}up.{level}.block.{j}", channels, out)
            channels = out
        if level:
            t.conv(f"{up[0]}up_{level}_upsample", f"{up[1]}up.{level}.upsample.conv")
    t.norm(up[0] + "norm_out", up[1] + "norm_out").conv(up[0] + "conv_out", up[1] + "conv_out")
    t.conv("conv_out", "conv_out")
    return t.rules


def diffusion_rules(cfg: DiTConfig, tokenizer_cfg: TokenizerConfig) -> list[Rule]:
    return [
        *branch_rules(cfg, "dit/main/", BASE_PREFIX, is_control=False),
        *branch_rules(cfg, "dit/control/", CONTROL_PREFIX, is_control=True),
        *semantic_rules(cfg),
        *tokenizer_rules(tokenizer_cfg, TOKENIZER_PREFIX, param_prefix="tokenizer/"),
    ]


def ignore_prefixes() -> tuple[str, ...]:
    return (OUTSIDE_MODEL + UNUSED_CONTROL + (BASE_PREFIX + POS_EMBEDDING, CONTROL_PREFIX + POS_EMBEDDING)
            + tokenizer_ignore_prefixes(TOKENIZER_PREFIX))


@dataclasses.dataclass
class DiffusionReport:
    conversion: ConversionReport
    control_keys_from_base: int  # control tensors the diffusion checkpoint lacked (kept from the base)

    def summary(self) -> str:
        return f"{self.conversion.summary()}; {self.control_keys_from_base} control keys kept from the base DiT"


def _check_pos_embeddings(state_dict: Mapping[str, np.ndarray], cfg: DiTConfig) -> list[str]:
    expected = None
    problems = []
    for key in (BASE_PREFIX + POS_EMBEDDING, CONTROL_PREFIX + POS_EMBEDDING):
        if key not in state_dict:
            continue
        expected = full_pos_embedding(cfg) if expected is None else expected
        value = np.asarray(state_dict[key])
        if value.shape != expected.shape:
            problems.append(f"key '{key}' has shape {value.shape}, expected {expected.shape}")
        elif not np.allclose(value, expected, rtol=0, atol=1e-6):
            err = float(np.max(np.abs(value - expected)))
            problems.append(f"key '{key}' differs from the 3D sincos table by {err:.3g}: not supported")
    return problems


def convert_params(base: Mapping[str, np.ndarray], diffusion: Mapping[str, np.ndarray], cfg: DiTConfig,
                      tokenizer_cfg: TokenizerConfig, *, target=None, source: str = "diffusion checkpoints"):
    """(params, DiffusionReport) from the base DiT state dict and the diffusion state dict.

    target: the params tree to fill (shapes and dtypes); defaults to `abstract_params`."""
    base_only = [k for k in diffusion if k.startswith(BASE_PREFIX)]
    if base_only:
        raise ConversionError([f"diffusion checkpoint holds base-DiT key '{k}'" for k in base_only[:5]], source)
    rules = diffusion_rules(cfg, tokenizer_cfg)
    control_keys = {key for r in rules if r.param.startswith("dit/control/") for key in r.key_list}
    # the control branch starts as a copy of the base DiT; the diffusion checkpoint overwrites it
    from_base = {key: base[BASE_PREFIX + key[len(CONTROL_PREFIX):]] for key in control_keys
                 if key not in diffusion and BASE_PREFIX + key[len(CONTROL_PREFIX):] in base}
    state_dict = {**base, **from_base, **diffusion}
    problems = _check_pos_embeddings(state_dict, cfg)
    if problems:
        raise ConversionError(problems, source)
    target = abstract_params(cfg, tokenizer_cfg) if target is None else target
    params, report = convert(rules, state_dict, target,
                             ignore_prefixes=ignore_prefixes(), source=source)
    return params, DiffusionReport(report, len(from_base))


def load_diffusion(base_dir: str | Path, diffusion_dir: str | Path, cfg: DiTConfig, tokenizer_cfg: TokenizerConfig):
    """`CogVideoX-2b-sat/transformer` and `diffusion` directories (each with a `latest` tracker) →
    (params, report)."""
    base_file, diffusion_file = read_latest(base_dir), read_latest(diffusion_dir)
    return convert_params(read_torch(base_file, "module"), read_torch(diffusion_file, "module"), cfg,
                             tokenizer_cfg, source=f"{base_file} + {diffusion_file}")
