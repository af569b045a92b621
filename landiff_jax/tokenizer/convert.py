"""Converter for `tokenizer/model.safetensors` (the released `VideoVQ` state dict).

Keys are mapped by an explicit table (`tokenizer_rules`). Buffers that are in the file but not
used at inference are skipped through `ignore_prefixes` and counted in the report: `mean`, `std`
(present, never applied: `mean_std_path` is None in the release) and
`quantizer._codebook.{initted,cluster_size,embed_avg}` (training state), plus Theia's translator
heads `feature_extractor.model.translator.*`. Theia's backbone is optional: taken from the file's
`feature_extractor.model.backbone.model.*` keys, or from a separate Theia directory holding the
same keys without the `feature_extractor.model.` prefix.

Training reads those buffers with `convert_train_state` (the EMA codebook, and mean/std when the
features are normalised) through the same engine, and a `mean_std_path` file with `read_mean_std`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import jax
import numpy as np

from landiff_jax.convert import (
    CheckpointError,
    Rule,
    Rules,
    Transform,
    convert,
    read_safetensors,
    read_torch_tensor,
)
from landiff_jax.tokenizer.api import abstract_params
from landiff_jax.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
from landiff_jax.tokenizer.losses import init_model_state
from landiff_jax.tokenizer.model import VideoVQ

THEIA_PREFIX = "feature_extractor.model."
THEIA_BACKBONE = THEIA_PREFIX + "backbone.model."
UNUSED_BUFFERS = ("mean", "std", "quantizer._codebook.initted", "quantizer._codebook.cluster_size",
                  "quantizer._codebook.embed_avg")

# torch [1, 1, d] / [1, n, d] tensors that are [d] / [n, d] parameters here
SQUEEZE_LEADING = Transform("squeeze_leading", lambda a: a.reshape(a.shape[1:]) if a.shape[0] == 1 else a,
                            lambda s: (1,) + tuple(s))
MASK_TOKEN = Transform("flatten", lambda a: a.reshape(-1), lambda s: (1, 1) + tuple(s))


def patch_transform(patch: int, in_channels: int) -> Transform:
    """Conv2d weight [O, I, p, p] → patch-embedding kernel [(p p I), O] (see `blocks.patchify`)."""
    return Transform(
        "patch_conv",
        lambda a: np.transpose(a, (2, 3, 1, 0)).reshape(-1, a.shape[0]),
        lambda s: (s[1], in_channels, patch, patch),
    )


# our TransformerBlock sub-params → the torch sub-keys of a TiTok ResidualAttentionBlock / HF ViTLayer
_TITOK_BLOCK = {"ln_1": "ln_1", "wq": "attn.wq", "wk": "attn.wk", "wv": "attn.wv", "wo": "attn.wo",
                "ln_2": "ln_2", "mlp/fc1": "mlp.c_fc", "mlp/fc2": "mlp.c_proj"}
_VIT_BLOCK = {"ln_1": "layernorm_before", "wq": "attention.attention.query", "wk": "attention.attention.key",
              "wv": "attention.attention.value", "wo": "attention.output.dense", "ln_2": "layernorm_after",
              "mlp/fc1": "intermediate.dense", "mlp/fc2": "output.dense"}


def _blocks(t: Rules, param: str, key_template: str, n: int, names: Mapping[str, str], attn_bias: bool) -> None:
    """n stacked transformer blocks: our sub-params `names` ← their sub-keys under `key_template`."""
    for ours, theirs in names.items():
        template = f"{key_template}.{theirs}"
        if ours.startswith("ln_"):
            t.norm(f"{param}/{ours}", template, n)
        else:
            t.dense(f"{param}/{ours}", template, bias=attn_bias or ours.startswith("mlp"), n=n)


def tokenizer_rules(config: TokenizerConfig, prefix: str = "", *, param_prefix: str = "",
                    theia: bool = False, decode_only: bool = False) -> list[Rule]:
    """The key table of a VideoVQ state dict whose keys start with `prefix`; our parameter paths
    start with `param_prefix` (e.g. 'semantic/tokenizer/'). Theia's backbone only with `theia`;
    with `decode_only`, just what `decode_codes` uses (no encoder, no quantizer.project_in)."""
    t = Rules(param_prefix, prefix)
    n = config.num_layers
    if not decode_only:
        _encoder_rules(t, config)
    if config.has_vq_projection:
        t.dense("quantizer/project_out", "quantizer.project_out")
    t.add("quantizer/codebook", "quantizer._codebook.embed", SQUEEZE_LEADING)
    # decoder
    t.add("decoder/mask_token", "decoder.mask_token", MASK_TOKEN)
    t.dense("decoder/decoder_embed", "decoder.decoder_embed")
    t.norm("decoder/trunk/ln_pre", "decoder.ln_pre")
    _blocks(t, "decoder/trunk/layers", "decoder.transformer.{i}", n, _TITOK_BLOCK, config.attn_bias)
    t.norm("decoder/ln_post", "decoder.ln_post")
    t.dense("decoder/ffn/fc1", "decoder.ffn.0")
    t.dense("decoder/ffn/fc2", "decoder.ffn.2")
    if theia:
        _theia_rules(t, config)
    return t.rules


def _encoder_rules(t: Rules, config: TokenizerConfig) -> None:
    t.add("encoder/iframe_queries", "encoder.IFrame_latent_tokens")
    if config.temporal_size > 1:
        t.add("encoder/pframe_queries", "encoder.PFrame_latent_tokens")
    t.add("encoder/patch_embed/proj/kernel", "encoder.patch_embed.weight",
          patch_transform(config.patch_size, config.image_channels))
    t.add("encoder/patch_embed/proj/bias", "encoder.patch_embed.bias")
    t.norm("encoder/trunk/ln_pre", "encoder.ln_pre")
    _blocks(t, "encoder/trunk/layers", "encoder.transformer.{i}", config.num_layers, _TITOK_BLOCK, config.attn_bias)
    t.norm("encoder/ln_post", "encoder.ln_post")
    t.dense("encoder/proj_out", "encoder.proj_out")
    if config.has_vq_projection:
        t.dense("quantizer/project_in", "quantizer.project_in")


def _theia_rules(t: Rules, config: TokenizerConfig) -> None:
    if config.theia is None:
        raise ValueError("theia=True but the tokenizer config has no Theia extractor")
    vit = config.theia
    t.add("feature_extractor/cls_token", THEIA_BACKBONE + "embeddings.cls_token", MASK_TOKEN)
    t.add("feature_extractor/position_embeddings", THEIA_BACKBONE + "embeddings.position_embeddings",
          SQUEEZE_LEADING)
    t.add("feature_extractor/patch_embed/proj/kernel",
          THEIA_BACKBONE + "embeddings.patch_embeddings.projection.weight", patch_transform(vit.patch_size, 3))
    t.add("feature_extractor/patch_embed/proj/bias", THEIA_BACKBONE + "embeddings.patch_embeddings.projection.bias")
    _blocks(t, "feature_extractor/layers", THEIA_BACKBONE + "encoder.layer.{i}", vit.num_layers, _VIT_BLOCK, True)
    t.norm("feature_extractor/layernorm", THEIA_BACKBONE + "layernorm")


def tokenizer_ignore_prefixes(prefix: str = "", *, theia: bool = False, decode_only: bool = False) -> tuple[str, ...]:
    """State-dict key prefixes that are in released files but unused here (counted, not converted).
    Without `theia`, every Theia key is skipped too; with `decode_only`, the encoder side too."""
    skipped = UNUSED_BUFFERS + ((THEIA_PREFIX + "translator.",) if theia else (THEIA_PREFIX,))
    if decode_only:
        skipped += ("encoder.", "quantizer.project_in.")
    return tuple(prefix + p for p in skipped)


def has_theia(state_dict: Mapping[str, np.ndarray], prefix: str = "") -> bool:
    return any(k.startswith(prefix + THEIA_BACKBONE) for k in state_dict)


def convert_params(state_dict: Mapping[str, np.ndarray], config: TokenizerConfig, prefix: str = "",
                      *, theia: bool | None = None, decode_only: bool = False, abstract=None,
                      source: str = "tokenizer checkpoint"):
    """(params, report) from a VideoVQ state dict. `theia=None` converts Theia's backbone when its
    keys are present (decoding needs none; `encode_video` needs it); `decode_only` converts just
    what `decode_codes` uses. `abstract` replaces `abstract_params(...)` (e.g. zero-size stand-ins)."""
    theia = (has_theia(state_dict, prefix) and not decode_only) if theia is None else theia
    kinds = dict(theia=theia, decode_only=decode_only)
    return convert(
        tokenizer_rules(config, prefix, **kinds),
        state_dict,
        abstract_params(config, **kinds) if abstract is None else abstract,
        ignore_prefixes=tokenizer_ignore_prefixes(prefix, **kinds),
        source=source,
    )


def load_tokenizer(path: str | Path, config: TokenizerConfig | None = None, theia_dir: str | Path | None = None):
    """`tokenizer/model.safetensors` (and optionally a Theia directory / safetensors file whose keys
    are `backbone.model.*`, `translator.*`) → (VideoVQ(config), params, report).

    config defaults to the released sizes. Theia weights come from the file when present there.
    """
    config = config or TokenizerConfig.full()
    state_dict = dict(read_safetensors(path))
    if theia_dir is not None:
        theia_sd = read_safetensors(theia_dir)
        if not any(k.startswith("backbone.model.") for k in theia_sd):
            raise CheckpointError(f"{theia_dir}: no Theia backbone keys ('backbone.model.*') found")
        if has_theia(state_dict):
            raise CheckpointError(f"{path} already holds Theia weights; do not also pass theia_dir={theia_dir}")
        state_dict.update({THEIA_PREFIX + k: v for k, v in theia_sd.items()})
    with_theia = has_theia(state_dict)
    if with_theia and config.theia is None:
        config = dataclasses.replace(config, theia=TokenizerConfig.full().theia)
    params, report = convert_params(state_dict, config, theia=with_theia, source=str(path))
    return VideoVQ(config), params, report



# ---- training state -------------------------------------------------------------------------
SCALAR = Transform("scalar", lambda a: a.reshape(()), lambda s: (1,))


def train_state_rules(config: TokenizerTrainConfig, prefix: str = "") -> list[Rule]:
    """The key table of the tokenizer's model_state (see losses.py): the EMA codebook buffers, and
    the mean/std buffers when the config normalises features."""
    c = prefix + "quantizer._codebook."
    rules = [Rule("codebook/embed", c + "embed", SQUEEZE_LEADING),
             Rule("codebook/embed_avg", c + "embed_avg", SQUEEZE_LEADING),
             Rule("codebook/cluster_size", c + "cluster_size", SQUEEZE_LEADING),
             Rule("codebook/initted", c + "initted", SCALAR)]
    if config.normalize:
        rules += [Rule("mean", prefix + "mean"), Rule("std", prefix + "std")]
    return rules


def convert_train_state(state_dict: Mapping[str, np.ndarray], config: TokenizerTrainConfig, prefix: str = "",
                        *, source: str = "tokenizer checkpoint"):
    """(model_state, report) of a VideoVQ state dict: what `losses.train_loss` updates in the step
    (the parameters come from `convert_params` and `losses.split_params`)."""
    abstract = jax.eval_shape(lambda: init_model_state(config, jax.random.key(0)))
    skipped = ("encoder.", "decoder.", "quantizer.project_in.", "quantizer.project_out.", THEIA_PREFIX)
    if not config.normalize:
        skipped += ("mean", "std")
    return convert(train_state_rules(config, prefix), state_dict, abstract,
                   ignore_prefixes=tuple(prefix + p for p in skipped), source=source)


def read_mean_std(path: str | Path, channels: int):
    """A `mean_std_path` file (torch.save(stack([mean, std]))) → (mean [C], std [C]) float32."""
    stats = read_torch_tensor(path)
    if stats.shape != (2, channels):
        raise CheckpointError(f"{path}: mean/std tensor has shape {stats.shape}, expected (2, {channels})")
    return stats[0].astype(np.float32), stats[1].astype(np.float32)
