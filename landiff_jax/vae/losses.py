"""Training loss of the 3D causal VAE (the tiny system trains its own; the released one is
CogVideoX's): reconstruction plus a small KL term of the diagonal Gaussian posterior.

    loss = mean |x − D(z)| + l2_weight · mean (x − D(z))² + kl_weight · mean KL(q(z|x) ‖ N(0, 1)),
    z = mean + σ·ε

L1 reconstruction (as the CogVideoX VAE's own training) over every pixel of the [-1, 1] video,
plus an optional squared error: on scenes that are mostly flat background (the synthetic world)
a missing small object costs L1 little next to the background's many small errors, and the
square weighs those large errors up; the KL is averaged over latent elements. The posterior
sample is drawn from the step's key (`ε` can be injected). No adversarial or perceptual terms:
at tiny size on flat synthetic scenes they are not needed.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.vae.api import split_moments
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.model import Decoder, Encoder, init_params


@dataclasses.dataclass(frozen=True)
class VAELossConfig:
    vae: VAEConfig
    kl_weight: float = 1e-6
    l2_weight: float = 0.0


def vae_loss(cfg: VAELossConfig, params, video, noise):
    """video [b f H W 3] in [-1, 1], noise [b t h w z] -> (loss, metrics)."""
    moments = Encoder(cfg.vae).apply({"params": params["encoder"]}, video)
    mean, logvar = split_moments(cfg.vae, moments)
    z = mean + jnp.exp(0.5 * logvar) * noise
    recon, _ = Decoder(cfg.vae).apply({"params": params["decoder"]}, z)
    error = recon - video
    rec = jnp.mean(jnp.abs(error))
    rec_l2 = jnp.mean(error**2)
    kl = 0.5 * jnp.mean(mean**2 + jnp.exp(logvar) - 1.0 - logvar)
    loss = rec + cfg.l2_weight * rec_l2 + cfg.kl_weight * kl
    return loss, {"rec_l1": rec, "rec_l2": rec_l2, "kl": kl, "latent_std": jnp.std(mean)}


def latent_shape(cfg: VAEConfig, video_shape) -> tuple[int, ...]:
    b, f, h, w, _ = video_shape
    s = cfg.spatial_factor
    return (b, cfg.latent_frames(f), h // s, w // s, cfg.z_channels)


def train_loss(cfg: VAELossConfig, trainable, frozen, model_state, batch, key):
    """The trainer's contract; batch = {"video": [b f H W 3] in [-1, 1]}."""
    del frozen
    video = batch["video"].astype(jnp.float32)
    noise = jax.random.normal(key, latent_shape(cfg.vae, video.shape), jnp.float32)
    loss, metrics = vae_loss(cfg, trainable, video, noise)
    return loss, (metrics, model_state)


def init_train_state(cfg: VAELossConfig, key):
    """(trainable = encoder + decoder, frozen = {}, model_state = {})."""
    return nn.unbox(init_params(cfg.vae, key)), {}, {}
