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
    CONV,
    LINEAR,
    ConversionError,
    ConversionReport,
    Rule,
    Transform,
    convert,
    layer_keys,
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


def _linear(param: str, key: str, bias: bool = True) -> list[Rule]:
    rules = [Rule(f"{param}/kernel", key + ".weight", LINEAR)]
    return rules + [Rule(f"{param}/bias", key + ".bias")] if bias else rules


def _norm(param: str, key: str) -> list[Rule]:
    return [Rule(f"{param}/scale", key + ".weight"), Rule(f"{param}/bias", key + ".bias")]


def _conv(param: str, key: str) -> list[Rule]:
    return [Rule(f"{param}/kernel", key + ".weight", CONV), Rule(f"{param}/bias", key + ".bias")]


def _stacked(rules: list[Rule], n: int) -> list[Rule]:
    """Per-layer rules written with '{i}' in their keys → rules stacking layers 0..n-1."""
    return [Rule(r.param, layer_keys(r.keys, n), r.transform) for r in rules]


def branch_rules(cfg: DiTConfig, param_prefix: str, key_prefix: str, is_control: bool) -> list[Rule]:
    """Key table of one branch (main: `model.diffusion_model.`; control: `model.control_model.
    diffusion_model.`) onto params under `param_prefix` ('dit/main/' or 'dit/control/')."""
    p, k = param_prefix, key_prefix
    h, hd = cfg.num_heads, cfg.head_dim
    layer = f"{k}transformer.layers.{{i}}."
    adaln = f"{k}mixins.adaln_layer."
    per_layer = [
        *_linear(f"{p}layers/adaln", adaln + "adaLN_modulations.{i}.1"),
        *_norm(f"{p}layers/input_layernorm", layer + "input_layernorm"),
        Rule(f"{p}layers/attention/qkv/kernel", layer + "attention.query_key_value.weight", _qkv_kernel(h, hd)),
        Rule(f"{p}layers/attention/qkv/bias", layer + "attention.query_key_value.bias", _reshape((3, h, hd))),
        *_norm(f"{p}layers/attention/query_norm", adaln + "query_layernorm_list.{i}"),
        *_norm(f"{p}layers/attention/key_norm", adaln + "key_layernorm_list.{i}"),
        Rule(f"{p}layers/attention/dense/kernel", layer + "attention.dense.weight", _attention_out(h, hd)),
        Rule(f"{p}layers/attention/dense/bias", layer + "attention.dense.bias"),
        *_norm(f"{p}layers/post_attention_layernorm", layer + "post_attention_layernorm"),
        *_linear(f"{p}layers/mlp/fc1", layer + "mlp.dense_h_to_4h"),
        *_linear(f"{p}layers/mlp/fc2", layer + "mlp.dense_4h_to_h"),
    ]
    if is_control:
        per_layer += _linear(f"{p}layers/zero_linear", adaln + "zero_linears.{i}", bias=False)
    rules = [
        *_linear(f"{p}time_embed/fc1", k + "time_embed.0"),
        *_linear(f"{p}time_embed/fc2", k + "time_embed.2"),
        *_conv(f"{p}patch_embed", k + "mixins.patch_embed.proj"),
        *_linear(f"{p}text_proj", k + "mixins.patch_embed.text_proj"),
        *_stacked(per_layer, cfg.control_layers if is_control else cfg.num_layers),
    ]
    if not is_control:
        rules += [
            *_norm(f"{p}final_layernorm", k + "transformer.final_layernorm"),
            *_norm(f"{p}final_layer/norm_final", k + "mixins.final_layer.norm_final"),
            *_linear(f"{p}final_layer/adaln", k + "mixins.final_layer.adaLN_modulation.1"),
            *_linear(f"{p}final_layer/linear", k + "mixins.final_layer.linear"),
        ]
    return rules


def _resnet_rules(param: str, key: str, in_ch: int, out_ch: int) -> list[Rule]:
    rules = [*_norm(f"{param}/norm1", key + ".norm1"), *_conv(f"{param}/conv1", key + ".conv1"),
             *_norm(f"{param}/norm2", key + ".norm2"), *_conv(f"{param}/conv2", key + ".conv2")]
    return rules + _conv(f"{param}/nin_shortcut", key + ".nin_shortcut") if in_ch != out_ch else rules


def semantic_rules(cfg: DiTConfig, param_prefix: str = "semantic/") -> list[Rule]:
    """SemanticCond's upsampler (vq_gan_blocks.Decoder) and conv_out."""
    sem, p = cfg.semantic, param_prefix + "upsample_model/"
    k = SEMANTIC_PREFIX + "upsample_model."
    levels = len(sem.ch_mult)
    channels = sem.level_channels(levels - 1)
    rules = [*_conv(p + "conv_in", k + "conv_in"),
             *_resnet_rules(p + "mid_block_1", k + "mid.block_1", channels, channels),
             *_resnet_rules(p + "mid_block_2", k + "mid.block_2", channels, channels)]
    for level in reversed(range(levels)):
        out = sem.level_channels(level)
        for j in range(sem.num_res_blocks + 1):
            rules += _resnet_rules(f"{p}up_{level}_block_{j}", f"{k}up.{level}.block.{j}", channels, out)
            channels = out
        if level:
            rules += _conv(f"{p}up_{level}_upsample", f"{k}up.{level}.upsample.conv")
    rules += [*_norm(p + "norm_out", k + "norm_out"), *_conv(p + "conv_out", k + "conv_out"),
              *_conv(param_prefix + "conv_out", SEMANTIC_PREFIX + "conv_out")]
    return rules


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


def convert_diffusion(base: Mapping[str, np.ndarray], diffusion: Mapping[str, np.ndarray], cfg: DiTConfig,
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
    return convert_diffusion(read_torch(base_file, "module"), read_torch(diffusion_file, "module"), cfg,
                             tokenizer_cfg, source=f"{base_file} + {diffusion_file}")
