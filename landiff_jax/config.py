"""The whole system's configuration: one frozen bundle of every component's config.

Built from a preset (`full`, `tiny`) or from the original's configuration (a fixture's or a
release's `meta.json`-style dict); either way `LanDiffConfig.check()` verifies that the
components agree where they hand data to each other (codebook, frame layout, feature channels,
latent grid, text widths).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from landiff_jax.diffusion.config import DiTConfig, SamplerConfig
from landiff_jax.lm.config import LMConfig
from landiff_jax.text.config import T5Config
from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.vae.config import VAEConfig

PRESETS = ("full", "tiny")


@dataclasses.dataclass(frozen=True)
class LanDiffConfig:
    t5_lm: T5Config  # Flan-T5-XXL encoder (LM side)
    t5_dit: T5Config  # T5-v1.1-XXL encoder (diffusion side)
    tokenizer: TokenizerConfig
    lm: LMConfig
    dit: DiTConfig
    sampler: SamplerConfig
    vae: VAEConfig

    @property
    def max_latent_frames(self) -> int:
        return self.tokenizer.temporal_size

    def video_frames(self, latent_frames: int) -> int:
        return self.vae.video_frames(latent_frames)

    def latent_frames(self, num_frames: int | None) -> int:
        """Video frames → latent/semantic frames T (odd, ≥ 3, ≤ the tokenizer's temporal size:
        the chunked VAE decode needs odd T); None → the maximum."""
        t_max = self.max_latent_frames
        if num_frames is None:
            return t_max
        valid = [self.video_frames(t) for t in range(3, t_max + 1, 2)]
        if num_frames not in valid:
            raise ValueError(f"num_frames={num_frames} is not supported; choose one of {valid}")
        return (num_frames - 1) // self.vae.temporal_compress_times + 1

    @property
    def video_size(self) -> tuple[int, int]:
        f = self.vae.spatial_factor
        return self.dit.latent_height * f, self.dit.latent_width * f

    def check(self) -> "LanDiffConfig":
        """Raise ValueError listing every disagreement between components."""
        tok, lm, dit = self.tokenizer, self.lm, self.dit
        pairs = [
            ("lm.codebook_size", lm.codebook_size, "tokenizer.codebook_size", tok.codebook_size),
            ("lm.iframe_tokens", lm.iframe_tokens, "tokenizer.iframe_tokens", tok.iframe_tokens),
            ("lm.pframe_tokens", lm.pframe_tokens, "tokenizer.pframe_tokens", tok.pframe_tokens),
            ("lm.segment_length", lm.segment_length, "tokenizer.temporal_size", tok.temporal_size),
            ("lm.text_dim", lm.text_dim, "t5_lm.d_model", self.t5_lm.d_model),
            ("dit.text_hidden_size", dit.text_hidden_size, "t5_dit.d_model", self.t5_dit.d_model),
            ("dit.semantic.z_channels", dit.semantic.z_channels, "tokenizer.output_channels", tok.output_channels),
            ("dit.latent_frames", dit.latent_frames, "tokenizer.temporal_size", tok.temporal_size),
            ("dit.in_channels", dit.in_channels, "vae.z_channels", self.vae.z_channels),
            ("dit latent grid", (dit.latent_height, dit.latent_width), "tokenizer grid × upsampling",
             tuple(s * 2 ** (len(dit.semantic.ch_mult) - 1) for s in tok.grid)),
        ]
        problems = [f"{a}={x} but {b}={y}" for a, x, b, y in pairs if x != y]
        if problems:
            raise ValueError("inconsistent LanDiff configuration:\n  " + "\n  ".join(problems))
        return self

    def with_dtype(self, dtype) -> "LanDiffConfig":
        """Parameters and compute of every network in `dtype` (float32 for parity, bf16 on GPU);
        the VAE's float32 convolutions stay at 'highest' precision."""
        dtype = jnp.dtype(dtype)
        cast = lambda c: dataclasses.replace(c, dtype=dtype, param_dtype=dtype)
        vae = cast(self.vae)
        if dtype != jnp.float32:
            vae = dataclasses.replace(vae, precision="default")
        return dataclasses.replace(self, t5_lm=cast(self.t5_lm), t5_dit=cast(self.t5_dit), tokenizer=cast(self.tokenizer),
                                   lm=cast(self.lm), dit=cast(self.dit), vae=vae)

    def with_dit_attention(self, implementation: str | None) -> "LanDiffConfig":
        """The diffusion transformer's attention kernel (`nn.dot_product_attention`'s
        implementation; None: `nn.full_attention_implementation` — our Hopper kernel ('mosaic')
        for bf16 on one H100/H200, cuDNN on other GPUs and on a mesh, XLA on CPU)."""
        allowed = (None, "xla", "cudnn", "mosaic")
        if implementation not in allowed:
            raise ValueError(f"DiT attention must be one of {allowed}, got {implementation!r}")
        return dataclasses.replace(self, dit=dataclasses.replace(self.dit, attention=implementation))

    # ---- constructors ------------------------------------------------------------------
    @classmethod
    def full(cls) -> "LanDiffConfig":
        """The released system: 49 frames of 480×720 from 13 semantic frames."""
        return cls(T5Config.xxl(), T5Config.xxl(), TokenizerConfig.full(), LMConfig.full(), DiTConfig.full(),
                   SamplerConfig(), VAEConfig.full()).check()

    @classmethod
    def tiny(cls) -> "LanDiffConfig":
        """A few-MB system for tests and the CPU demo: 9 frames of 64×96 from 3 semantic frames."""
        tokenizer = TokenizerConfig.tiny()
        dit = DiTConfig.tiny(text_length=96,  # room for byte-level prompts in the random-weight demo
                             semantic=dataclasses.replace(DiTConfig.tiny().semantic, z_channels=tokenizer.output_channels))
        return cls(T5Config.tiny(), T5Config.tiny(), tokenizer, LMConfig.tiny(), dit,
                   SamplerConfig(num_steps=4, cfg_num_steps=4), VAEConfig.tiny()).check()

    @classmethod
    def preset(cls, name: str) -> "LanDiffConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
        return getattr(cls, name)()

    @classmethod
    def from_original(cls, config: Mapping[str, Any], t5_lm: Mapping[str, Any], t5_dit: Mapping[str, Any]) -> "LanDiffConfig":
        """From the original's configuration as the e2e fixture's `meta.json` holds it
        (`tokenizer_build_tokenizer_overrides`, `llm`, `diffusion.model`) and the two T5
        directories' `config.json` dicts."""
        t5_lm_cfg, t5_dit_cfg = T5Config.from_hf_config(t5_lm), T5Config.from_hf_config(t5_dit)
        if "tokenizer_build_tokenizer_overrides" in config:
            tokenizer = TokenizerConfig.from_build_overrides(config["tokenizer_build_tokenizer_overrides"])
        else:
            tokenizer = TokenizerConfig.from_original(config["tokenizer"])
        llm = dict(config["llm"])
        if isinstance(llm["tokenizer"].get("tokenizer"), str):  # "same as config.tokenizer"
            llm["tokenizer"] = {**llm["tokenizer"], "tokenizer": config["tokenizer"]}
        model = config["diffusion"]["model"]
        vae = VAEConfig.from_original(model, scale_factor=float(model.get("scale_factor", VAEConfig().scale_factor)))
        return cls(t5_lm_cfg, t5_dit_cfg, tokenizer, LMConfig.from_original(llm, text_dim=t5_lm_cfg.d_model),
                   DiTConfig.from_original(model), SamplerConfig.from_original(model), vae).check()
