"""The original's diffusion configuration → DiTConfig, SemanticCondConfig, SamplerConfig.

Reads the original's yaml `model:` block (or a fixture's `meta['config']`, which holds it under
`model`) with the original argument names; variants this port does not implement are refused.
"""

from __future__ import annotations

from typing import Mapping

from landiff_jax.diffusion.config import DiffusionTrainConfig, DiTConfig, SamplerConfig, SemanticCondConfig
from landiff_jax.tokenizer.config import TokenizerConfig


def _model_block(cfg: Mapping) -> Mapping:
    return cfg["model"] if "model" in cfg else cfg


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise NotImplementedError(f"diffusion config: {what} is not supported (only the released variant is)")


def semantic_cond_config(cfg: Mapping) -> SemanticCondConfig:
    control = _model_block(cfg)["control_network_config"]["params"]
    sem = control["modules"]["semantic_condition_config"]["params"]
    up = sem["upsample_model_config"]["params"]
    _require(sem.get("feature_type", "video_theia_interpolate") == "video_theia_interpolate", "feature_type")
    _require(up.get("use_mid_attention", True) is False and not up.get("attn_resolutions"), "upsampler attention")
    _require(up.get("upsample_type") == "pixelshuffle", "upsample_type other than pixelshuffle")
    return SemanticCondConfig(
        z_channels=int(up["z_channels"]),
        ch=int(up["ch"]),
        ch_mult=tuple(float(m) for m in up["ch_mult"]),
        num_res_blocks=int(up["num_res_blocks"]),
        out_dim=int(sem["out_dim"]),
        target_dim=int(sem["target_dim"]),
    )


def dit_config(cfg: Mapping, **overrides) -> DiTConfig:
    model = _model_block(cfg)
    main = model["network_config"]["params"]
    control = model["control_network_config"]["params"]
    mods = main["modules"]
    pos = mods["pos_embed_config"]["params"]
    adaln = mods["adaln_layer_config"]["params"]
    ctrl_adaln = control["modules"]["adaln_layer_config"]["params"]
    _require(main.get("elementwise_affine", True) and adaln.get("qk_ln", True), "elementwise_affine/qk_ln False")
    _require(not main.get("use_SwiGLU") and not main.get("use_RMSNorm"), "SwiGLU / RMSNorm")
    _require(not adaln.get("use_semantic_injection_adaln") and not control.get("use_semantic_injection_adaln"),
             "use_semantic_injection_adaln")
    _require(ctrl_adaln.get("use_zero_linears", True), "control branch without zero linears")
    _require(main["transformer_args"].get("layernorm_order", "pre") == "pre", "layernorm_order other than 'pre'")
    if int(adaln.get("control_layers", 15)) != int(control["num_layers"]):
        raise ValueError(
            f"control_layers={adaln.get('control_layers')} of the main model must equal the control "
            f"branch's num_layers={control['num_layers']}"
        )
    for key in ("hidden_size", "num_attention_heads", "patch_size", "latent_width", "latent_height", "time_embed_dim"):
        if main[key] != control[key]:
            raise ValueError(f"main and control networks differ in {key}: {main[key]} vs {control[key]}")
    values = dict(
        hidden_size=int(main["hidden_size"]),
        num_heads=int(main["num_attention_heads"]),
        num_layers=int(main["num_layers"]),
        control_layers=int(control["num_layers"]),
        time_embed_dim=int(main.get("time_embed_dim") or main["hidden_size"]),
        text_length=int(pos.get("text_length", 0)),
        text_hidden_size=int(mods["patch_embed_config"]["params"]["text_hidden_size"]),
        patch_size=int(main["patch_size"]),
        in_channels=int(main["in_channels"]),
        out_channels=int(main["out_channels"]),
        latent_frames=(int(main["num_frames"]) - 1) // int(main["time_compressed_rate"]) + 1,
        latent_height=int(main["latent_height"]),
        latent_width=int(main["latent_width"]),
        height_interpolation=float(pos.get("height_interpolation", 1.0)),
        width_interpolation=float(pos.get("width_interpolation", 1.0)),
        time_interpolation=float(pos.get("time_interpolation", 1.0)),
        semantic=semantic_cond_config(cfg),
    )
    values.update(overrides)
    return DiTConfig(**values)


def sampler_config(cfg: Mapping, **overrides) -> SamplerConfig:
    model = _model_block(cfg)
    sampler = model["sampler_config"]
    _require(sampler["target"].endswith("VPSDEDPMPP2MSampler"), f"sampler {sampler['target']}")
    params = sampler["params"]
    _require(not params.get("fixed_frames"), "fixed_frames")
    disc = params["discretization_config"]
    _require(disc["target"].endswith("ZeroSNRDDPMDiscretization"), f"discretization {disc['target']}")
    guider = params["guider_config"]
    _require(guider["target"].endswith("DynamicCFG"), f"guider {guider['target']}")
    den = model["denoiser_config"]
    den_params = den["params"]
    _require(den["target"].endswith("DiscreteDenoiser"), f"denoiser {den['target']}")
    _require(den_params["scaling_config"]["target"].endswith("VideoScaling"), "denoiser scaling")
    _require(not den_params.get("quantize_c_noise", True), "quantize_c_noise=True")
    den_disc = den_params["discretization_config"]
    for d in (disc, den_disc):
        extra = {k: v for k, v in d.get("params", {}).items() if k not in ("shift_scale",)}
        _require(not extra, f"discretization params {extra}")
    values = dict(
        num_steps=int(params["num_steps"]),
        shift_scale=float(disc.get("params", {}).get("shift_scale", 1.0)),
        cfg_scale=float(guider["params"]["scale"]),
        cfg_exp=float(guider["params"]["exp"]),
        cfg_num_steps=int(guider["params"]["num_steps"]),
        denoiser_shift_scale=float(den_disc.get("params", {}).get("shift_scale", 1.0)),
        denoiser_num_idx=int(den_params["num_idx"]),
    )
    values.update(overrides)
    return SamplerConfig(**values)


def diffusion_train_config(cfg: Mapping, tokenizer: TokenizerConfig | None = None, **overrides) -> DiffusionTrainConfig:
    """The yaml `model:` block's network, loss and conditioner settings (control mode)."""
    model = _model_block(cfg)
    loss = model["loss_fn_config"]
    _require(loss["target"].endswith("VideoDiffusionLoss"), f"loss {loss['target']}")
    params = loss["params"]
    _require(not params.get("offset_noise_level"), "offset_noise_level")
    _require(not any(params.get("extra_loss_weight", {}).values()), "non-zero extra_loss_weight")
    sampling = params["sigma_sampler_config"]
    _require(sampling["target"].endswith("DiscreteSampling"), f"sigma sampler {sampling['target']}")
    disc = sampling["params"]["discretization_config"]
    _require(disc["target"].endswith("ZeroSNRDDPMDiscretization"), f"discretization {disc['target']}")
    shift = float(disc.get("params", {}).get("shift_scale", 1.0))
    num_idx = int(sampling["params"]["num_idx"])
    den = model["denoiser_config"]["params"]
    den_shift = float(den["discretization_config"].get("params", {}).get("shift_scale", 1.0))
    _require((int(den["num_idx"]), den_shift) == (num_idx, shift),
             "a denoiser table different from the timestep sampler's")
    _require(den["scaling_config"]["target"].endswith("VideoScaling"), "denoiser scaling")
    embedders = model["conditioner_config"]["params"]["emb_models"]
    text = [e for e in embedders if e.get("input_key") == "txt"]
    _require(len(text) == 1 and len(embedders) == 1, "conditioners other than one text embedder")
    values = dict(
        dit=dit_config(cfg),
        tokenizer=tokenizer,
        fixed_frames=int(params.get("fixed_frames") or 0),
        text_drop_prob=float(text[0].get("ucg_rate", 0.0)),
        num_timesteps=num_idx,
        shift_scale=shift,
    )
    values.update(overrides)
    return DiffusionTrainConfig(**values)
