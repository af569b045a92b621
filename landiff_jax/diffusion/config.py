"""Configs of the diffusion stage: the control DiT (with its semantic conditioner) and the sampler.

`from_original` reads the original's yaml `model:` block (or a fixture's `meta['config']`, which
holds it under `model`) with the original argument names.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.vae.config import COGVIDEOX_SCALE_FACTOR


def _model_block(cfg: Mapping) -> Mapping:
    return cfg["model"] if "model" in cfg else cfg


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise NotImplementedError(f"diffusion config: {what} is not supported (only the released variant is)")


@dataclasses.dataclass(frozen=True)
class SemanticCondConfig:
    """SemanticCond: the VQGAN-style upsampler (vq_gan_blocks.Decoder, pixel-shuffle) + conv 3×3."""

    z_channels: int = 768  # tokenizer feature channels (image_channels)
    ch: int = 512
    ch_mult: tuple[float, ...] = (0.25, 1.0)
    num_res_blocks: int = 4
    out_dim: int = 64  # upsampler output channels
    target_dim: int = 16  # latent channels
    num_groups: int = 32
    norm_eps: float = 1e-6

    @classmethod
    def from_original(cls, cfg: Mapping) -> "SemanticCondConfig":
        control = _model_block(cfg)["control_network_config"]["params"]
        sem = control["modules"]["semantic_condition_config"]["params"]
        up = sem["upsample_model_config"]["params"]
        _require(sem.get("feature_type", "video_theia_interpolate") == "video_theia_interpolate", "feature_type")
        _require(up.get("use_mid_attention", True) is False and not up.get("attn_resolutions"), "upsampler attention")
        _require(up.get("upsample_type") == "pixelshuffle", "upsample_type other than pixelshuffle")
        return cls(
            z_channels=int(up["z_channels"]),
            ch=int(up["ch"]),
            ch_mult=tuple(float(m) for m in up["ch_mult"]),
            num_res_blocks=int(up["num_res_blocks"]),
            out_dim=int(sem["out_dim"]),
            target_dim=int(sem["target_dim"]),
        )

    def level_channels(self, level: int) -> int:
        return int(self.ch * self.ch_mult[level])


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """CogVideoX-2B DiT (main model) plus its control branch (a copy of the first
    `control_layers` layers with zero linears) and the control branch's semantic conditioner."""

    hidden_size: int = 1920
    num_heads: int = 30
    num_layers: int = 30
    control_layers: int = 15  # 0: the base DiT alone (text → latent, no control branch)
    time_embed_dim: int = 512
    text_length: int = 226
    text_hidden_size: int = 4096
    patch_size: int = 2
    in_channels: int = 16
    out_channels: int = 16
    latent_frames: int = 13  # (num_frames - 1) // time_compressed_rate + 1
    latent_height: int = 60
    latent_width: int = 90
    height_interpolation: float = 1.875
    width_interpolation: float = 1.875
    time_interpolation: float = 1.0
    mlp_ratio: int = 4
    # sat passes layernorm_epsilon=1e-5 to the transformer LayerNorms over the partial's 1e-6
    layernorm_eps: float = 1e-5
    qk_norm_eps: float = 1e-6
    final_norm_eps: float = 1e-6
    semantic: SemanticCondConfig = SemanticCondConfig()
    # dot_product_attention implementation; None: nn.full_attention_implementation (our Hopper
    # kernel for bf16 on one H100/H200, cuDNN on other GPUs, XLA on CPU)
    attention: str | None = None
    # activation rematerialisation of both scanned stacks: 'none', 'full' or 'dots'
    # (nn.dense.REMAT_POLICIES); gradients are the same for every choice
    remat: str = "none"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the patch grid."""
        return self.latent_height // self.patch_size, self.latent_width // self.patch_size

    def num_video_tokens(self, frames: int | None = None) -> int:
        h, w = self.grid
        return (frames or self.latent_frames) * h * w

    @classmethod
    def from_original(cls, cfg: Mapping, **overrides) -> "DiTConfig":
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
            semantic=SemanticCondConfig.from_original(cfg),
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def full(cls, **overrides) -> "DiTConfig":
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> "DiTConfig":
        values = dict(
            hidden_size=64, num_heads=4, num_layers=3, control_layers=2, time_embed_dim=32,
            text_length=8, text_hidden_size=32, in_channels=4, out_channels=4,
            latent_frames=3, latent_height=8, latent_width=12,
            semantic=SemanticCondConfig(z_channels=32, ch=128, num_res_blocks=0, out_dim=8, target_dim=4),
        )
        values.update(overrides)
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """VPSDEDPMPP2MSampler on ZeroSNRDDPMDiscretization with DynamicCFG, and the
    DiscreteDenoiser's 1000-entry table (its own discretization)."""

    num_steps: int = 50
    shift_scale: float = 3.0
    cfg_scale: float = 6.0
    cfg_exp: float = 5.0
    cfg_num_steps: int = 50  # DynamicCFG's own num_steps
    num_timesteps: int = 1000
    linear_start: float = 0.00085
    linear_end: float = 0.012
    denoiser_shift_scale: float = 3.0
    denoiser_num_idx: int = 1000

    @classmethod
    def from_original(cls, cfg: Mapping, **overrides) -> "SamplerConfig":
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
        return cls(**values)


TRAIN_MODES = ("control", "base")
SEMANTIC_SOURCES = ("codes", "features")


@dataclasses.dataclass(frozen=True)
class DiffusionTrainConfig:
    """Training loss of the diffusion stage (the original's VideoDiffusionLoss).

    mode 'control': the control branch and the semantic conditioner train on the frozen main DiT
    (and frozen tokenizer copy); 'base': the base DiT alone (text → latent) trains, all of it.
    semantic_source: 'codes' decodes the batch's semantic codes with the frozen tokenizer (what
    the fixtures do), 'features' takes the batch's stored tokenizer-space (Theia) features.
    fixed_frames: a clean latent prefix of this many frames (the streaming prompt), excluded from
    the loss mean. Timesteps are drawn uniformly from the `num_timesteps` entries of the zero-SNR
    DDPM table with `shift_scale`, which is also the denoiser's table.
    """

    dit: DiTConfig = DiTConfig()
    tokenizer: TokenizerConfig | None = None  # needed by semantic_source 'codes' only
    mode: str = "control"
    semantic_source: str = "codes"
    fixed_frames: int = 0
    text_drop_prob: float = 0.1
    num_timesteps: int = 1000
    shift_scale: float = 3.0
    # the VAE's latent scale: examples hold the unscaled posterior, the trainer samples
    # scale_factor · (mean + std · ε) as the latent the DiT sees
    scale_factor: float = COGVIDEOX_SCALE_FACTOR

    def __post_init__(self):
        if self.mode not in TRAIN_MODES:
            raise ValueError(f"mode must be one of {TRAIN_MODES}, got {self.mode!r}")
        if self.semantic_source not in SEMANTIC_SOURCES:
            raise ValueError(f"semantic_source must be one of {SEMANTIC_SOURCES}, got {self.semantic_source!r}")
        if self.mode == "control" and self.dit.control_layers < 1:
            raise ValueError("mode 'control' needs dit.control_layers >= 1")
        if self.mode == "control" and self.semantic_source == "codes" and self.tokenizer is None:
            raise ValueError("semantic_source 'codes' needs a tokenizer config")
        if not 0 <= self.fixed_frames < self.dit.latent_frames:
            raise ValueError(f"fixed_frames must be in [0, {self.dit.latent_frames}), got {self.fixed_frames}")
        if not 0.0 <= self.text_drop_prob <= 1.0:
            raise ValueError(f"text_drop_prob must be in [0, 1], got {self.text_drop_prob}")

    @property
    def model(self) -> DiTConfig:
        """The DiT the loss runs: the control DiT, or the main DiT alone in mode 'base'."""
        return self.dit if self.mode == "control" else dataclasses.replace(self.dit, control_layers=0)

    @classmethod
    def from_original(cls, cfg: Mapping, tokenizer: TokenizerConfig | None = None, **overrides) -> "DiffusionTrainConfig":
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
            dit=DiTConfig.from_original(cfg),
            tokenizer=tokenizer,
            fixed_frames=int(params.get("fixed_frames") or 0),
            text_drop_prob=float(text[0].get("ucg_rate", 0.0)),
            num_timesteps=num_idx,
            shift_scale=shift,
        )
        values.update(overrides)
        return cls(**values)
