"""Training loss of the diffusion stage, as the original's VideoDiffusionLoss computes it.

Per sample b, with a = sqrt(ā)[idx] of the zero-SNR DDPM table (shift 3):
  context  = keep_b · T5 states (a dropped caption is an all-zero context)
  noised   = x0·a + ε·sqrt(1 − a²); the first `fixed_frames` frames are replaced by x0 (clean prefix)
  x0_pred  = net(noised, c_noise=idx)·(−sqrt(1 − a²)) + noised·a           (v-prediction denoiser)
  loss_b   = mean over the (T − fixed_frames)·H·W·C loss frames of w·(x0_pred − x0)², w = 1/(1 − a²)
  loss     = mean_b loss_b
Draw order (one key split three ways): text keep ~ Bernoulli(1 − p), idx ~ U{0 … 999}, ε ~ N(0, 1).

The control net sees noised + SemanticCond(tokenizer features), the main net sees noised; the
features come from the frozen tokenizer decoding the batch's codes, or from the batch itself.
Frozen params go through stop_gradient, so they can never receive a gradient.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.diffusion.conditioner import SemanticCond
from landiff_jax.diffusion.config import DiffusionTrainConfig
from landiff_jax.diffusion.denoiser import denoise, video_scalings
from landiff_jax.diffusion.dit import ControlDiT
from landiff_jax.diffusion.schedule import denoiser_sigma_table
from landiff_jax.tokenizer.model import VideoVQ


class Draws(NamedTuple):
    text_keep: jnp.ndarray  # [b] bool (or 0/1): keep the caption
    timestep_idx: jnp.ndarray  # [b] int in [0, num_timesteps)
    noise: jnp.ndarray  # [b t H W c] float32


def sample_draws(cfg: DiffusionTrainConfig, batch: dict, key) -> Draws:
    k_text, k_time, k_noise = jax.random.split(key, 3)
    latent = batch["latent"]
    b = latent.shape[0]
    return Draws(
        jax.random.bernoulli(k_text, 1.0 - cfg.text_drop_prob, (b,)),
        jax.random.randint(k_time, (b,), 0, cfg.num_timesteps),
        jax.random.normal(k_noise, latent.shape, jnp.float32),
    )


def split_params(params: dict, mode: str = "control") -> tuple[dict, dict]:
    """Converted params {'dit': {'main', 'control'}, 'semantic', 'tokenizer'} → (trainable, frozen).

    control: trainable = control branch + semantic conditioner; frozen = main DiT (+ tokenizer).
    base: trainable = the main DiT; nothing frozen (other entries are not used by the base DiT)."""
    if mode == "base":
        return {"dit": {"main": params["dit"]["main"]}}, {}
    if mode != "control":
        raise ValueError(f"mode must be 'control' or 'base', got {mode!r}")
    missing = [k for k in ("control", "main") if k not in params.get("dit", {})] + \
        [k for k in ("semantic",) if k not in params]
    if missing:
        raise ValueError(f"params lack {missing} needed to train the control branch")
    trainable = {"dit": {"control": params["dit"]["control"]}, "semantic": params["semantic"]}
    frozen = {"dit": {"main": params["dit"]["main"]}}
    if "tokenizer" in params:
        frozen["tokenizer"] = params["tokenizer"]
    return trainable, frozen


def merge_params(trainable: dict, frozen: dict) -> dict:
    """The union of two disjoint param trees (nested dicts)."""
    out = dict(frozen)
    for k, v in trainable.items():
        if k in out:
            if not (isinstance(v, dict) and isinstance(out[k], dict)):
                raise ValueError(f"parameter '{k}' is both trainable and frozen")
            out[k] = merge_params(v, out[k])
        else:
            out[k] = v
    return out


def check_batch(cfg: DiffusionTrainConfig, batch: dict) -> None:
    """One-line errors naming the batch field before any compute."""
    c = cfg.dit
    latent = batch.get("latent")
    if latent is None or latent.ndim != 5 or latent.shape[2:] != (c.latent_height, c.latent_width, c.in_channels):
        raise ValueError(f"batch['latent'] must be [b, t, {c.latent_height}, {c.latent_width}, {c.in_channels}], "
                         f"got {None if latent is None else latent.shape}")
    b, t = latent.shape[:2]
    if not cfg.fixed_frames < t:
        raise ValueError(f"fixed_frames={cfg.fixed_frames} leaves no loss frame of batch['latent']'s {t}")
    text = batch.get("text_embedding")
    if text is None or text.shape != (b, c.text_length, c.text_hidden_size):
        raise ValueError(f"batch['text_embedding'] must be {(b, c.text_length, c.text_hidden_size)}, "
                         f"got {None if text is None else text.shape}")
    if cfg.mode == "base":
        return
    if cfg.semantic_source == "codes":
        n = cfg.tokenizer.num_codes(t)
        if batch.get("codes") is None or batch["codes"].shape != (b, n):
            raise ValueError(f"batch['codes'] must be {(b, n)} for {t} frames, "
                             f"got {None if batch.get('codes') is None else batch['codes'].shape}")
    else:
        want = (b, t, c.latent_height // 2, c.latent_width // 2, c.semantic.z_channels)
        if batch.get("features") is None or batch["features"].shape != want:
            raise ValueError(f"batch['features'] must be {want}, "
                             f"got {None if batch.get('features') is None else batch['features'].shape}")


def semantic_condition(cfg: DiffusionTrainConfig, params: dict, batch: dict, num_frames: int):
    """(semantic feature [b t H W c], {'tokenizer_features', 'upsampled_features'})."""
    if cfg.semantic_source == "codes":
        features = VideoVQ(cfg.tokenizer).apply({"params": params["tokenizer"]}, batch["codes"], num_frames,
                                                method=VideoVQ.decode_codes)
    else:
        features = batch["features"]
    features = jax.lax.stop_gradient(features)  # the tokenizer is frozen
    sem = cfg.dit.semantic
    feature, upsampled = SemanticCond(sem, cfg.dit.dtype, cfg.dit.param_dtype).apply(
        {"params": params["semantic"]}, features, return_upsampled=True)
    return feature, {"tokenizer_features": features, "upsampled_features": upsampled}


def diffusion_loss(cfg: DiffusionTrainConfig, trainable: dict, frozen: dict, batch: dict, draws: Draws,
                   collect: bool = False):
    """The loss with explicit draws → (loss, aux). aux: 'per_sample_loss' [b] and, with
    `collect`, every intermediate (channels-last) the parity runner compares."""
    check_batch(cfg, batch)
    params = merge_params(trainable, jax.lax.stop_gradient(frozen))
    x0 = batch["latent"].astype(jnp.float32)  # [b t H W c]
    b, t = x0.shape[:2]
    k = cfg.fixed_frames
    expand = lambda v: v.reshape(b, 1, 1, 1, 1)

    table = jnp.asarray(denoiser_sigma_table(cfg.num_timesteps, cfg.shift_scale))
    idx = jnp.asarray(draws.timestep_idx, jnp.int32)
    a = table[idx]  # [b] sqrt(ā)
    noised = x0 * expand(a) + draws.noise.astype(jnp.float32) * expand(jnp.sqrt(1.0 - a * a))
    noised = noised.at[:, :k].set(x0[:, :k])
    context = batch["text_embedding"].astype(jnp.float32) * jnp.asarray(draws.text_keep, jnp.float32)[:, None, None]

    aux = {}
    if cfg.mode == "control":
        feature, aux = semantic_condition(cfg, params, batch, t)
        aux["semantic_feature"] = feature
    else:
        feature = None
    model = ControlDiT(cfg.model, collect=collect)

    def network(x_in, c_noise):
        out = model.apply({"params": params["dit"]}, x_in, c_noise, context, feature)
        if collect:
            out, aux["dit"] = out
        aux["network_output"] = out
        return out

    x0_pred = denoise(network, noised, video_scalings(a, idx, table))  # [b t H W c] float32
    weight = 1.0 / (1.0 - a * a)  # [b]
    per_sample = jnp.mean(expand(weight) * (x0_pred[:, k:] - x0[:, k:]) ** 2, axis=(1, 2, 3, 4))
    loss = jnp.mean(per_sample)
    if not collect:
        return loss, {"per_sample_loss": per_sample}
    aux.update(crossattn=context, alphas_cumprod_sqrt=a, sigma_table=table, noised_input=noised,
               denoiser_output=x0_pred, loss_weight=weight, loss_model_output=x0_pred[:, k:],
               loss_target=x0[:, k:], per_sample_loss=per_sample, loss=loss)
    return loss, aux


def train_loss(cfg: DiffusionTrainConfig, trainable: dict, frozen: dict, model_state: dict, batch: dict, key):
    """The contract's loss: draws from `key`, then `diffusion_loss` → (loss, (metrics, model_state))."""
    draws = sample_draws(cfg, batch, key)
    loss, aux = diffusion_loss(cfg, trainable, frozen, batch, draws)
    metrics = {
        "diffusion_loss": loss.astype(jnp.float32),
        "text_dropped": jnp.sum(1.0 - jnp.asarray(draws.text_keep, jnp.float32)),
        "mean_timestep": jnp.mean(draws.timestep_idx.astype(jnp.float32)),
    }
    return loss, (metrics, model_state)


def control_from_base(cfg: DiffusionTrainConfig, main: dict, control_template: dict) -> dict:
    """The control branch as the original starts it: a copy of the main DiT's embeddings and first
    `control_layers` layers, with zero output linears (so the controlled model equals the base)."""
    n = cfg.dit.control_layers
    layers = {k: jax.tree.map(lambda p: p[:n], v) for k, v in main["layers"].items()}
    layers["zero_linear"] = jax.tree.map(jnp.zeros_like, control_template["layers"]["zero_linear"])
    return {**{k: main[k] for k in ("time_embed", "patch_embed", "text_proj")}, "layers": layers}


def init_train_state(cfg: DiffusionTrainConfig, key) -> tuple[dict, dict, dict]:
    """(trainable, frozen, model_state) from scratch. In mode 'control' the control branch is a copy
    of the (random) main DiT with zero output linears and a zero semantic conv_out, as the original
    initialises it on top of a base model: step 0 of the controlled model equals the base model."""
    params = _init_params(cfg, key)
    return split_params(params, cfg.mode) + ({},)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(cfg: DiffusionTrainConfig, key) -> dict:
    c = cfg.dit
    k_dit, k_sem, k_tok = jax.random.split(key, 3)
    t = c.latent_frames
    x = jnp.zeros((1, t, c.latent_height, c.latent_width, c.in_channels), jnp.float32)
    timesteps = jnp.zeros((1,), jnp.float32)
    context = jnp.zeros((1, c.text_length, c.text_hidden_size), jnp.float32)
    if cfg.mode == "base":
        return {"dit": nn.meta.unbox(ControlDiT(cfg.model).init(k_dit, x, timesteps, context)["params"])}
    dit = nn.meta.unbox(ControlDiT(c).init(k_dit, x, timesteps, context, x)["params"])
    dit["control"] = control_from_base(cfg, dit["main"], dit["control"])
    features = jnp.zeros((1, t, c.latent_height // 2, c.latent_width // 2, c.semantic.z_channels), jnp.float32)
    semantic = nn.meta.unbox(SemanticCond(c.semantic, c.dtype, c.param_dtype).init(k_sem, features)["params"])
    semantic["conv_out"] = jax.tree.map(jnp.zeros_like, semantic["conv_out"])  # zero_init_conv_out
    params = {"dit": dit, "semantic": semantic}
    if cfg.semantic_source == "codes":
        codes = jnp.zeros((1, cfg.tokenizer.num_codes(t)), jnp.int32)
        params["tokenizer"] = nn.meta.unbox(VideoVQ(cfg.tokenizer).init(k_tok, codes, t,
                                                                        method=VideoVQ.decode_codes)["params"])
    return params
