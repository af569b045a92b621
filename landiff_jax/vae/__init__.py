"""CogVideoX 3D causal VAE (LanDiff's first stage): chunked decode of sampler latents into
video, encode for training, and the `3d-vae.pt` converter.

The package's face: `VAEConfig` (presets), `abstract_params(cfg, decode_only=...)`,
`convert_params(state_dict, cfg) -> (params, report)`, the jitted entry points `decode_latents`
(generation) and `encode` (training, reconstruction), and `LatentStream` (the same decode fed
chunk by chunk: long videos).
"""

from landiff_jax.vae.api import (
    LatentStream,
    decode_full,
    decode_latents,
    encode,
    encode_mode,
    from_unit,
    moments,
    posterior,
    sample_latents,
    split_moments,
    to_decoder_space,
    to_uint8,
    to_unit,
    uint8_to_unit,
)
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.convert import convert_params, load_vae
from landiff_jax.vae.model import Decoder, Encoder, abstract_params

__all__ = [
    "Decoder",
    "Encoder",
    "LatentStream",
    "VAEConfig",
    "abstract_params",
    "convert_params",
    "decode_full",
    "decode_latents",
    "encode",
    "encode_mode",
    "from_unit",
    "load_vae",
    "moments",
    "posterior",
    "sample_latents",
    "split_moments",
    "to_uint8",
    "to_decoder_space",
    "to_unit",
    "uint8_to_unit",
]
