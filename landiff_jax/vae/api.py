"""What the pipeline calls: chunked decode of sampler latents, one-call decode, encode for
training, and the conversions between [0, 1], [-1, 1] and uint8 frames.

Layouts are channels-last: video [b f H W 3], latents [b t h w z]. "Latents" are in the
sampler's scaled space (scale_factor · z); the decoder sees latents / scale_factor.

Chunked decode (CogWrapper.decode_latent): latent frames [0:3], then [2i+1 : 2i+3], each
chunk decoded with the causal-conv caches left by the previous one; chunk 0 yields 9 frames
and every later chunk 8, so t latent frames give 4(t-1)+1 frames. The original silently drops
the last latent frame when t is even; here that needs `drop_last_even_frame=True` (parity),
otherwise an even t raises.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.model import Decoder, Encoder

FIRST_CHUNK = 3  # latent frames in chunk 0
CHUNK = 2  # latent frames in every later chunk


# --- frame value conversions -------------------------------------------------------------

def from_unit(video):
    """[0, 1] -> [-1, 1] (clamped), the encoder's input range (_pre_process_cog_video)."""
    return jnp.clip(video * 2.0 - 1.0, -1.0, 1.0)


def to_unit(video):
    """Decoder output -> [0, 1]: clamp((x + 1) / 2, 0, 1) (_post_process_cog_video)."""
    return jnp.clip((video + 1.0) / 2.0, 0.0, 1.0)


def to_uint8(video):
    """Decoder output -> uint8 frames (to_unit, ×255, rounded)."""
    return jnp.round(to_unit(video) * 255.0).astype(jnp.uint8)


def uint8_to_unit(frames):
    return jnp.asarray(frames, jnp.float32) / 255.0


# --- checks --------------------------------------------------------------------------------

def _check_latents(cfg: VAEConfig, latents, what: str):
    if latents.ndim != 5 or latents.shape[-1] != cfg.z_channels:
        raise ValueError(f"{what}: latents must be [b t h w {cfg.z_channels}] (channels last), got {latents.shape}")


def _check_video(cfg: VAEConfig, video):
    """Any frame count and size is accepted, as by the original (odd and even frame counts have
    their own time-compression rules); the 1 + 4k frames and multiples of 8 that the decoder
    reproduces are the caller's business."""
    if video.ndim != 5 or video.shape[-1] != cfg.in_channels or min(video.shape[1:4]) < 1:
        raise ValueError(f"encode: video must be [b f H W {cfg.in_channels}] (channels last), got {video.shape}")


# --- decode --------------------------------------------------------------------------------

def to_decoder_space(cfg: VAEConfig, latents):
    """Sampler latents -> what the decoder sees (the original's `1/scale_factor * latent`)."""
    return latents.astype(jnp.float32) * (1.0 / cfg.scale_factor)


@functools.partial(jax.jit, static_argnames="cfg")
def _decode_full(params, latents, cfg: VAEConfig):
    return Decoder(cfg).apply({"params": params["decoder"]}, to_decoder_space(cfg, latents))[0]


def decode_full(params, cfg: VAEConfig, latents):
    """All latent frames in one decoder call (empty caches): [b t h w z] -> [b F H W 3],
    unclamped; F = 4(t-1)+1 for odd t, 4t for even t. Memory grows with t; the pipeline uses
    `decode_latents`."""
    _check_latents(cfg, latents, "decode_full")
    return _decode_full(params, latents, cfg=cfg)


def _decode_chunk(params, latents, cache=None, *, cfg: VAEConfig):
    """One chunk of sampler latents [b n h w z] → (video [b f H W 3], the causal-conv caches)."""
    return Decoder(cfg).apply({"params": params["decoder"]}, to_decoder_space(cfg, latents), cache)


@functools.partial(jax.jit, static_argnames="cfg")
def _decode_chunked(params, latents, cfg: VAEConfig):
    # latents [b t h w z], t odd >= 3
    b, t, h, w, c = latents.shape
    first, cache = _decode_chunk(params, latents[:, :FIRST_CHUNK], cfg=cfg)
    n = (t - FIRST_CHUNK) // CHUNK
    if n == 0:
        return first
    chunks = jnp.moveaxis(latents[:, FIRST_CHUNK:].reshape(b, n, CHUNK, h, w, c), 1, 0)  # [n b 2 h w z]

    def step(carry, chunk):
        video, carry = _decode_chunk(params, chunk, carry, cfg=cfg)
        return carry, video

    _, rest = jax.lax.scan(step, cache, chunks)  # [n b f H W 3]
    rest = jnp.moveaxis(rest, 0, 1).reshape(b, -1, *rest.shape[3:])
    return jnp.concatenate([first, rest], axis=1)


def decode_latents(params, cfg: VAEConfig, latents, *, drop_last_even_frame: bool = False,
                   compile_only: bool = False):
    """Chunked decode exactly as the original pipeline (CogWrapper.decode_latent):
    [b t h w z] sampler latents -> video [b 4(t-1)+1 H W 3] in [-1, 1], unclamped.

    One jitted function: chunk 0, then a lax.scan over the 2-frame chunks carrying the
    causal-conv caches. t must be odd and >= 3; with `drop_last_even_frame` an even t
    loses its last latent frame, as the original does silently. compile_only: return the
    compiled function for these inputs (params may be `jax.ShapeDtypeStruct`s) instead."""
    _check_latents(cfg, latents, "decode_latents")
    t = latents.shape[1]
    if t % 2 == 0:
        if not drop_last_even_frame:
            raise ValueError(
                f"decode_latents: {t} latent frames is even; the chunked decode needs an odd count "
                "(1 + 4k video frames give 1 + k latent frames). The original drops the last latent "
                "frame here: pass drop_last_even_frame=True to do the same, or use decode_full."
            )
        latents = latents[:, : t - 1]
        t -= 1
    if t < FIRST_CHUNK:
        raise ValueError(f"decode_latents: needs at least {FIRST_CHUNK} latent frames, got {t}; use decode_full")
    if compile_only:
        return _decode_chunked.lower(params, latents, cfg=cfg).compile()
    return _decode_chunked(params, latents, cfg=cfg)


_decode_first = jax.jit(_decode_chunk, static_argnames="cfg")
_decode_next = jax.jit(_decode_chunk, static_argnames="cfg", donate_argnames="cache")


class LatentStream:
    """`decode_latents` fed as the latents are generated (streaming): each `push` decodes the whole
    chunks now available (3 latent frames first, then 2 at a time), each with the causal-conv
    caches left by the previous one, and returns their frames; a latent frame that does not
    complete a chunk waits for the next push. Two compiled functions (the first chunk, a later
    chunk), whatever the length: memory stays that of one chunk."""

    def __init__(self, params, cfg: VAEConfig):
        self.params, self.cfg = params, cfg
        self.cache = None
        self.pending = None  # host latents [b n h w z] not decoded yet

    def push(self, latents):
        """Sampler latents [b n h w z] → the frames of the chunks they complete, [b f H W 3] in
        [-1, 1] unclamped (f = 0 when none is complete yet)."""
        _check_latents(self.cfg, latents, "LatentStream.push")
        latents = np.asarray(latents, np.float32)  # sliced on the host: no compile per slice
        if self.pending is not None:
            latents = np.concatenate([self.pending, latents], axis=1)
        videos = []
        if self.cache is None and latents.shape[1] >= FIRST_CHUNK:
            video, self.cache = _decode_first(self.params, latents[:, :FIRST_CHUNK], cfg=self.cfg)
            videos.append(video)
            latents = latents[:, FIRST_CHUNK:]
        while self.cache is not None and latents.shape[1] >= CHUNK:
            video, self.cache = _decode_next(self.params, latents[:, :CHUNK], self.cache, cfg=self.cfg)
            videos.append(video)
            latents = latents[:, CHUNK:]
        self.pending = latents if latents.shape[1] else None
        if not videos:
            b, _, h, w, _ = latents.shape
            f = self.cfg.spatial_factor
            return jnp.zeros((b, 0, h * f, w * f, self.cfg.out_ch), jnp.float32)
        return videos[0] if len(videos) == 1 else jnp.concatenate(videos, axis=1)

    def close(self) -> None:
        """Refuse latents left over: the chunked decode needs an odd total, ≥ 3."""
        if self.pending is not None:
            raise ValueError(f"LatentStream: {self.pending.shape[1]} latent frame(s) left undecoded; the chunked "
                             f"decode needs an odd number of latent frames, at least {FIRST_CHUNK}")


# --- encode --------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnames="cfg")
def _moments(params, video, cfg: VAEConfig):
    return Encoder(cfg).apply({"params": params["encoder"]}, video)


def moments(params, cfg: VAEConfig, video):
    """Raw encoder output [b t h w 2z] of a [-1, 1] video [b f H W 3] (mean | unclamped logvar)."""
    _check_video(cfg, video)
    return _moments(params, video, cfg=cfg)


def split_moments(cfg: VAEConfig, moments_):
    """DiagonalGaussianDistribution: (mean, logvar clamped to [logvar_min, logvar_max])."""
    mean, logvar = jnp.split(moments_, 2, axis=-1)
    return mean, jnp.clip(logvar, cfg.logvar_min, cfg.logvar_max)


def posterior(params, cfg: VAEConfig, video):
    """(mean, logvar) of the diagonal Gaussian posterior of a [-1, 1] video, [b t h w z] each."""
    return split_moments(cfg, moments(params, cfg, video))


def sample_latents(cfg: VAEConfig, mean, logvar, *, key=None, noise=None):
    """scale_factor · (mean + exp(logvar / 2) · ε), ε = `noise` or N(0, 1) drawn from `key`."""
    if (key is None) == (noise is None):
        raise ValueError("sample_latents: pass exactly one of key= or noise=")
    if noise is None:
        noise = jax.random.normal(key, mean.shape, mean.dtype)
    elif noise.shape != mean.shape:
        raise ValueError(f"sample_latents: noise shape {noise.shape} != posterior shape {mean.shape}")
    return cfg.scale_factor * (mean + jnp.exp(0.5 * logvar) * noise)


def encode(params, cfg: VAEConfig, video, *, key=None, noise=None):
    """encode_first_stage: a [-1, 1] video [b f H W 3] -> sampled, scaled latents [b t h w z]."""
    mean, logvar = posterior(params, cfg, video)
    return sample_latents(cfg, mean, logvar, key=key, noise=noise)


def encode_mode(params, cfg: VAEConfig, video):
    """Deterministic variant: scale_factor · mean."""
    return cfg.scale_factor * posterior(params, cfg, video)[0]
