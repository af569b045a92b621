"""Configuration of the CogVideoX 3D causal VAE (LanDiff's first stage)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

# CogVideoX-2b's latent scale: the sampler works on `scale_factor * z`.
COGVIDEOX_SCALE_FACTOR = 1.15258426

_PRECISIONS = {"default": jax.lax.Precision.DEFAULT, "high": jax.lax.Precision.HIGH,
               "highest": jax.lax.Precision.HIGHEST}


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Encoder and decoder share these sizes (as in the released yaml).

    `precision` applies to every convolution: 'highest' keeps float32 convs in true float32 on
    GPUs (TF32 would exceed the parity tolerances); 'default' is right for bfloat16.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 3
    z_channels: int = 16
    in_channels: int = 3
    out_ch: int = 3
    temporal_compress_times: int = 4
    scale_factor: float = COGVIDEOX_SCALE_FACTOR
    num_groups: int = 32
    norm_eps: float = 1e-6
    # logvar clamp of the diagonal Gaussian posterior
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    precision: str = "highest"

    def __post_init__(self):
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        if self.precision not in _PRECISIONS:
            raise ValueError(f"VAEConfig.precision must be one of {sorted(_PRECISIONS)}, got {self.precision!r}")
        widths = {self.ch} | {self.ch * m for m in self.ch_mult}
        bad = sorted(w for w in widths if w % self.num_groups)
        if bad:
            raise ValueError(f"VAEConfig: channel widths {bad} are not divisible by num_groups={self.num_groups}")
        levels = math.log2(self.temporal_compress_times)
        if levels != int(levels) or not 0 <= levels < len(self.ch_mult):
            raise ValueError(
                f"VAEConfig.temporal_compress_times={self.temporal_compress_times} must be 2**k with "
                f"k < len(ch_mult)={len(self.ch_mult)}"
            )

    @property
    def conv_precision(self) -> jax.lax.Precision:
        return _PRECISIONS[self.precision]

    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)

    @property
    def time_levels(self) -> int:
        """How many resolution levels also resample time (log2 of temporal_compress_times)."""
        return int(math.log2(self.temporal_compress_times))

    @property
    def spatial_factor(self) -> int:
        return 2 ** (self.num_levels - 1)

    def latent_frames(self, frames: int) -> int:
        """Video frames 1 + 4k -> latent frames 1 + k."""
        return (frames - 1) // self.temporal_compress_times + 1

    def video_frames(self, latent_frames: int) -> int:
        return (latent_frames - 1) * self.temporal_compress_times + 1

    @classmethod
    def full(cls, **overrides) -> VAEConfig:
        """The released CogVideoX-2b VAE."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> VAEConfig:
        """Test size: two channel widths, one res block per level, 4 latent channels."""
        return cls(**{"ch": 32, "ch_mult": (1, 1, 2, 2), "num_res_blocks": 1, "z_channels": 4, **overrides})
