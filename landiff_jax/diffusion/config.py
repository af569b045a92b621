"""Configs of the diffusion stage: the control DiT (with its semantic conditioner) and the sampler
(the original's configuration is parsed by `diffusion/original.py`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.vae.config import COGVIDEOX_SCALE_FACTOR


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
    # dot_product_attention implementation (nn.attention.ATTENTION), chosen by `runtime`
    attention: str = "xla"
    # activation rematerialisation of both scanned stacks: 'none', 'full' or 'dots'
    # (nn.dense.REMAT_POLICIES); gradients are the same for every choice
    remat: str = "none"
    # layers per iteration of the scanned stacks' loop (1: a loop over every layer; the layer count:
    # no loop). Speed only: the same computation, less loop bookkeeping on small models
    scan_unroll: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.scan_unroll < 1:
            raise ValueError(f"scan_unroll must be >= 1, got {self.scan_unroll}")

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
    # long videos (streaming): every chunk after the first keeps this many latent frames of the
    # previous chunk as its clean prefix (the original's sampler `fixed_frames`) and generates the
    # rest. None: about half the chunk, the released choice (7 of 13: the diffusion yaml's comment,
    # "prefix_length=7, gen 1+4*6=25 frames"); see `stream_prefix`.
    stream_prefix_frames: int | None = None

    def __post_init__(self):
        if self.stream_prefix_frames is not None and self.stream_prefix_frames < 1:
            raise ValueError(f"stream_prefix_frames must be >= 1 (or None), got {self.stream_prefix_frames}")

    def stream_prefix(self, chunk: int) -> int:
        """Prefix latents of a streamed chunk of `chunk` (odd) latent frames: the configured count,
        or the largest odd count ≤ (chunk + 1) / 2 (13 → 7, 3 → 1), so that the generated part
        is even (whole 2-latent chunks of the causal VAE decode)."""
        if self.stream_prefix_frames is not None:
            return self.stream_prefix_frames
        half = (chunk + 1) // 2
        return half if half % 2 else half - 1



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
