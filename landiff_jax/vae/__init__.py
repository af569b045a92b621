"""CogVideoX 3D causal VAE (LanDiff's first stage): chunked decode of sampler latents into
video, encode for training, and the `3d-vae.pt` converter."""

from landiff_jax.vae.api import (
    decode_full,
    decode_latents,
    encode,
    encode_mode,
    from_unit,
    moments,
    posterior,
    sample_latents,
    split_moments,
    to_uint8,
    to_decoder_space,
    to_unit,
    uint8_to_unit,
)
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.convert import convert_state_dict, load_vae
from landiff_jax.vae.model import Decoder, Encoder, abstract_params, init_params

__all__ = [
    "Decoder",
    "Encoder",
    "VAEConfig",
    "abstract_params",
    "convert_state_dict",
    "decode_full",
    "decode_latents",
    "encode",
    "encode_mode",
    "from_unit",
    "init_params",
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
