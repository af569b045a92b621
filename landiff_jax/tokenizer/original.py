"""The original's tokenizer configuration (`build_tokenizer()`'s nested config, or the diffusion
fixtures' `tokenizer_build_tokenizer_overrides`) → TokenizerConfig / TheiaConfig."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from landiff_jax.tokenizer.config import TheiaConfig, TokenizerConfig, TokenizerTrainConfig


def theia_config(cfg: Mapping[str, Any]) -> TheiaConfig | None:
    """From the `feature_extractor` block of a `build_tokenizer()` config; None when the block
    does not describe a TheiaExtractor (e.g. a parameter-free stand-in)."""
    if "TheiaExtractor" not in str(cfg.get("__target__", "")) or "output_shape" not in cfg:
        return None
    if not cfg.get("interpolate", False):
        raise ValueError("feature_extractor.interpolate=False (Lanczos resize to 224²) is not supported")
    described = cfg.get("__theia_config__", cfg)
    vit = next((v for k, v in described.items() if k.startswith("backbone_ViTConfig")), None) or {}
    if vit.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"Theia backbone hidden_act {vit['hidden_act']!r} is not supported (expected 'gelu')")
    base = TheiaConfig()
    return TheiaConfig(
        hidden_size=vit.get("hidden_size", base.hidden_size),
        num_layers=vit.get("num_hidden_layers", base.num_layers),
        num_heads=vit.get("num_attention_heads", base.num_heads),
        mlp_dim=vit.get("intermediate_size", base.mlp_dim),
        patch_size=vit.get("patch_size", base.patch_size),
        image_size=vit.get("image_size", base.image_size),
        layer_norm_eps=vit.get("layer_norm_eps", base.layer_norm_eps),
        output_shape=tuple(cfg["output_shape"]),
    )


# build_tokenizer() override keys that do not change the model computed here
_IGNORED_OVERRIDES = {"attention_imp", "ckpt_path", "fwd_dtype"}


def tokenizer_config(cfg: Mapping[str, Any], **kw) -> TokenizerConfig:
    """From the nested `build_tokenizer()` config (as in the fixtures' meta.json `config`).

    `kw` sets fields the original does not describe (dtype, param_dtype)."""
    if cfg.get("model_type", "transformer") != "transformer":
        raise ValueError(f"model_type {cfg.get('model_type')!r} is not supported (only 'transformer')")
    if cfg.get("num_latent_tokens") is not None:
        raise ValueError("VideoVQ.num_latent_tokens (shared latent_tokens parameter) is not supported")
    enc, dec, vq = cfg["encoder"], cfg["decoder"], cfg["quantizer"]
    _check_supported(enc, "encoder", "VIDEO_ENCODER_MASK")
    _check_supported(dec, "decoder", "VIDEO_DECODER_MASK")
    if not enc.get("inside_latent_tokens", False):
        raise ValueError("encoder.inside_latent_tokens=False is not supported")
    shared = ("image_size", "image_channels", "patch_size", "width", "num_layers", "num_heads",
              "num_latent_tokens", "token_size", "temporal_size", "PFrame_tokens", "bias")
    differ = [k for k in shared if _norm(enc.get(k)) != _norm(dec.get(k))]
    if differ:
        raise ValueError(f"encoder and decoder differ in {differ}; only shared sizes are supported")
    if vq.get("dim", enc["token_size"]) != enc["token_size"]:
        raise ValueError(f"quantizer.dim {vq['dim']} != encoder.token_size {enc['token_size']}")
    rope = enc["rope_layer"]
    width, heads = enc["width"], enc["num_heads"]
    if rope.get("multiple") != 16 or rope.get("dim") != width // heads:
        raise ValueError(f"rope_layer must be multiple=16 with dim=head_dim={width // heads}, got {rope}")
    if _norm(rope) != _norm(dec["rope_layer"]):
        raise ValueError("encoder and decoder rope_layer configs differ")
    return TokenizerConfig(
        image_size=tuple(enc["image_size"]),
        image_channels=enc["image_channels"],
        patch_size=enc["patch_size"],
        width=width,
        num_layers=enc["num_layers"],
        num_heads=heads,
        num_latent_tokens=enc["num_latent_tokens"],
        token_size=enc["token_size"],
        temporal_size=enc["temporal_size"],
        pframe_tokens=enc["PFrame_tokens"],
        output_channels=dec["output_channels"],
        attn_bias=bool(enc.get("bias", True)),
        codebook_size=vq["codebook_size"],
        codebook_dim=vq.get("codebook_dim") or enc["token_size"],
        mean_std_dim=cfg.get("mean_std_dim"),
        rope_theta=float(rope.get("theta_base", 10000.0)),
        rope_max_time=rope["max_time"],
        rope_max_height=rope["max_height"],
        rope_max_width=rope["max_width"],
        rope_one_dim_max_time=rope.get("one_dim_max_time") or rope["max_time"],
        theia=theia_config(cfg.get("feature_extractor") or {}),
        **kw,
    )


def tokenizer_config_from_overrides(overrides: Mapping[str, Any], **kw) -> TokenizerConfig:
    """`build_tokenizer()` with the diffusion fixtures' `tokenizer_build_tokenizer_overrides`
    applied (sizes only; everything else as released)."""
    unknown = set(overrides) - _OVERRIDE_FIELDS.keys() - _IGNORED_OVERRIDES
    if unknown:
        raise ValueError(f"unknown build_tokenizer override(s): {sorted(unknown)}")
    fields = {_OVERRIDE_FIELDS[k]: v for k, v in overrides.items() if k in _OVERRIDE_FIELDS}
    if "image_size" in fields:
        fields["image_size"] = tuple(fields["image_size"])
    full = TokenizerConfig.full()
    channels = fields.get("image_channels", full.image_channels)
    image_size = fields.get("image_size", full.image_size)
    fields.setdefault("output_channels", channels)
    fields.setdefault("mean_std_dim", channels)
    fields.setdefault("rope_max_height", image_size[0])
    fields.setdefault("rope_max_width", image_size[1])
    fields.setdefault("theia", dataclasses.replace(full.theia, output_shape=image_size))
    return dataclasses.replace(full, **{**fields, **kw})


_OVERRIDE_FIELDS = {
    "width": "width",
    "num_layers": "num_layers",
    "num_heads": "num_heads",
    "image_channels": "image_channels",
    "token_size": "token_size",
    "image_size": "image_size",
    "temporal_size": "temporal_size",
    "num_latent_tokens": "num_latent_tokens",
    "PFrame_tokens": "pframe_tokens",
    "codebook_size": "codebook_size",
    "codebook_dim": "codebook_dim",
}


def _norm(v):
    """Lists and tuples compare equal; drop fiddle's target names."""
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items() if k != "__target__"}
    return v


def _check_supported(block: Mapping[str, Any], name: str, mask_type: str) -> None:
    problems = []
    if not str(block.get("positional_embedding_type", "")).endswith("ROPE_3D"):
        problems.append(f"positional_embedding_type {block.get('positional_embedding_type')} (only ROPE_3D)")
    if not str(block.get("attention_mask_type", "")).endswith(mask_type):
        problems.append(f"attention_mask_type {block.get('attention_mask_type')} (only {mask_type})")
    for flag in ("use_cls_token", "qk_norm", "causal", "code_drop"):
        if block.get(flag):
            problems.append(f"{flag}=True")
    if problems:
        raise ValueError(f"unsupported {name} config: {'; '.join(problems)}")


def tokenizer_train_config(cfg: Mapping[str, Any], **kw) -> TokenizerTrainConfig:
    """From the nested `build_tokenizer()` config of a training case (meta.json `config`);
    VectorQuantize defaults are read from the quantizer block or its `__defaults_that_matter__`."""
    vq = dict(cfg["quantizer"])
    vq = {**vq.pop("__defaults_that_matter__", {}), **vq}
    unsupported = {"use_cosine_sim": True, "stochastic_sample_codes": True, "learnable_codebook": True,
                   "ema_update": False}
    bad = [f"{k}={vq[k]}" for k, v in unsupported.items() if k in vq and bool(vq[k]) == v]
    if vq.get("heads", 1) != 1:
        bad.append(f"heads={vq['heads']}")
    if bad:
        raise ValueError(f"unsupported quantizer training setting(s): {', '.join(bad)}")
    return TokenizerTrainConfig(
        model=tokenizer_config(cfg, **kw),
        recon_loss_weight=float(cfg.get("recon_loss_weight", 1.0)),
        commit_loss_weight=float(cfg.get("commit_loss_weight", 1.0)),
        commitment_weight=float(vq.get("commitment_weight", 1.0)),
        decay=float(vq.get("decay", 0.8)),
        eps=float(vq.get("eps", 1e-5)),
        threshold_ema_dead_code=float(vq.get("threshold_ema_dead_code", 0.0)),
        kmeans_init=bool(vq.get("kmeans_init", False)),
        kmeans_iters=int(vq.get("kmeans_iters", 10)),
        rotation_trick=bool(vq.get("rotation_trick", True)),
        normalize=cfg.get("mean_std_path") is not None,
    )
