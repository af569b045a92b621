"""Training loss of the semantic tokenizer (VideoVQ.forward in train mode, with its EMA codebook).

    features ─(f−mean)/(std+1e-8) if normalize─▶ encoder ─▶ project_in ─▶ z [n d], n = B·L
    codes = nearest code of the codebook from BEFORE the step (k-means first when not initted)
    codebook state ← EMA, then dead-code replacement              (model_state, no gradient)
    z ─rotation trick (or straight-through)─▶ project_out ─▶ decoder ─▶ decoded
    total = recon_w · MSE(decoded, features) + commit_w · commitment_w · MSE(sg(code), z)
The I-frame (frame 0) and P-frame (frames 1..) MSEs are reported apart, not part of the total.

`inner_loss` takes the random draws explicitly (parity and tests inject them); `train_loss` is
the trainer's face: it makes the draws from its key, then calls `inner_loss`.
Parameters: trainable = encoder, decoder, quantizer/project_in|out; frozen = Theia
(`feature_extractor`) when present, unused here (batches carry stored features); model_state =
{"codebook": {embed, embed_avg, cluster_size, initted}} plus {"mean", "std"} [C] when normalising.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.tokenizer import codebook
from landiff_jax.tokenizer.config import TokenizerTrainConfig
from landiff_jax.tokenizer.model import VideoVQ, init_inputs

NORM_EPS = 1e-8


# ---- parameters and state -------------------------------------------------------------------
def split_params(params):
    """Converted VideoVQ params → (trainable, frozen). The codebook is in neither: it is model_state
    (read it with `convert.convert_train_state`)."""
    trainable = {k: v for k, v in params.items() if k not in ("feature_extractor", "quantizer")}
    projections = {k: v for k, v in params.get("quantizer", {}).items() if k != "codebook"}
    if projections:
        trainable["quantizer"] = projections
    frozen = {"feature_extractor": params["feature_extractor"]} if "feature_extractor" in params else {}
    return trainable, frozen


def inference_params(trainable, model_state):
    """VideoVQ params (without Theia) of a training state: the trainable ones with the EMA codebook
    in the quantizer, as `encode_features`/`decode_codes` and the converted checkpoint take them."""
    return {**trainable, "quantizer": {**trainable.get("quantizer", {}), "codebook": model_state["codebook"]["embed"]}}


def init_model_state(cfg: TokenizerTrainConfig, key):
    """A fresh codebook as vector_quantize_pytorch builds it: zeros awaiting k-means when
    kmeans_init, else Kaiming-uniform codes (initted); cluster sizes 1. Normalisation stats start as mean 0, std 1."""
    m = cfg.model
    shape = (m.codebook_size, m.codebook_dim)
    if cfg.kmeans_init:
        embed = jnp.zeros(shape, jnp.float32)
    else:
        bound = (6.0 / (m.codebook_size * m.codebook_dim)) ** 0.5  # kaiming_uniform_ of the [1, K, d] buffer
        embed = jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    state = {"codebook": codebook.init_state(embed, initted=not cfg.kmeans_init)}
    if cfg.normalize:
        state["mean"] = jnp.zeros((m.image_channels,), jnp.float32)
        state["std"] = jnp.ones((m.image_channels,), jnp.float32)
    return state


@functools.partial(jax.jit, static_argnums=0)
def init_train_state(cfg: TokenizerTrainConfig, key):
    """(trainable, frozen, model_state) of a tokenizer trained from scratch (no Theia: frozen = {})."""
    k_params, k_codebook = jax.random.split(key)
    model = VideoVQ(cfg.model)
    features = init_inputs(cfg.model, num_frames=cfg.model.temporal_size)[0]
    params = nn.meta.unbox(model.init(k_params, features, method=VideoVQ.initialize)["params"])
    trainable, _ = split_params(params)
    return trainable, {}, init_model_state(cfg, k_codebook)


# ---- draws ----------------------------------------------------------------------------------
def num_vectors(cfg: TokenizerTrainConfig, batch_size: int, num_frames: int) -> int:
    """n = B·L projected vectors per step."""
    return batch_size * cfg.model.num_codes(num_frames)


def draw(cfg: TokenizerTrainConfig, key, batch_size: int, num_frames: int):
    """Every random draw of one step: {"kmeans_rows": [K] starting rows of a k-means init,
    "dead_code_rows": sampler draws (codebook.draw_rows) for the replaced codes}."""
    n, k = num_vectors(cfg, batch_size, num_frames), cfg.model.codebook_size
    k_kmeans, k_dead = jax.random.split(key)
    kmeans_rows = codebook.sample_rows(codebook.draw_rows(k_kmeans, n, k), n, k)
    return {"kmeans_rows": kmeans_rows, "dead_code_rows": codebook.draw_rows(k_dead, n, k)}


# ---- loss -----------------------------------------------------------------------------------
def normalize(cfg: TokenizerTrainConfig, model_state, features):
    if not cfg.normalize:
        return features
    return (features - model_state["mean"]) / (model_state["std"] + NORM_EPS)


def forward(cfg: TokenizerTrainConfig, trainable, model_state, batch, draws):
    """One training forward → (loss, metrics, new_model_state, intermediates for parity)."""
    features = _check_batch(cfg, batch)
    m, model = cfg.model, VideoVQ(cfg.model)
    b, t = features.shape[:2]
    target = normalize(cfg, model_state, features.astype(jnp.float32))
    state = model_state["codebook"]
    params = inference_params(trainable, model_state)

    latent, projected = model.apply({"params": params}, target.astype(m.dtype), method=VideoVQ.project_features)
    z = projected.reshape(-1, m.codebook_dim)  # (b l) d
    z_const = jax.lax.stop_gradient(z)
    state = codebook.kmeans_init(state, z_const, draws["kmeans_rows"], cfg.kmeans_iters)
    codes, dist = codebook.nearest_codes(z, jax.lax.stop_gradient(state["embed"]))
    chosen = state["embed"][codes]  # (b l) d, codebook from before the update
    post_ema = codebook.ema_update(state, z_const, codes, cfg.decay, cfg.eps)
    new_state, expired = codebook.expire_codes(post_ema, z_const, draws["dead_code_rows"], cfg.threshold_ema_dead_code)

    through = codebook.rotate_to if cfg.rotation_trick else codebook.straight_through
    vectors = through(z, chosen)
    decoded, quantized = model.apply({"params": params}, vectors.reshape(b, -1, m.codebook_dim), t,
                                     method=VideoVQ.decode_vectors)
    sq = jnp.square(decoded.astype(jnp.float32) - target)  # b t h w c
    rec = sq.mean()
    commit = cfg.commitment_weight * jnp.square(jax.lax.stop_gradient(chosen) - z).mean()
    loss = cfg.recon_loss_weight * rec + cfg.commit_loss_weight * commit
    sq = jax.lax.stop_gradient(sq)
    counts = jnp.bincount(codes, length=m.codebook_size)
    metrics = {
        "loss": loss,
        "rec_loss": rec,
        "commit_loss": commit,
        "iframe_loss": sq[:, 0].mean(),
        "pframe_loss": sq[:, 1:].mean() if t > 1 else jnp.zeros((), jnp.float32),
        "codes_used": (counts > 0).sum().astype(jnp.float32),
        "codes_expired": expired.sum().astype(jnp.float32),
    }
    new_model_state = {**model_state, "codebook": new_state}
    trace = {
        "features_normalized": target, "encoder_out": latent, "vq_projected_in": projected,
        "vq_distances": dist.reshape(b, -1, m.codebook_size), "indices": codes.reshape(b, -1),
        "vq_codebook_quantize": chosen.reshape(b, -1, m.codebook_dim),
        "vq_rotated_quantize": vectors.reshape(b, -1, m.codebook_dim), "quantized": quantized,
        "re_features": decoded, "code_counts": counts, "post_ema": post_ema, "expired_mask": expired,
    }
    return loss, metrics, new_model_state, trace


def inner_loss(cfg: TokenizerTrainConfig, trainable, frozen, model_state, batch, draws):
    """`train_loss` with its draws given (see `draw`): (loss, (metrics, new_model_state))."""
    del frozen  # Theia is not run in training: batches carry its stored features
    loss, metrics, new_state, _ = forward(cfg, trainable, model_state, batch, draws)
    return loss, (metrics, new_state)


def train_loss(cfg: TokenizerTrainConfig, trainable, frozen, model_state, batch, key):
    """The stage loss of the contract: (loss, (metrics, new_model_state)); every draw from `key`."""
    b, t = _check_batch(cfg, batch).shape[:2]
    return inner_loss(cfg, trainable, frozen, model_state, batch, draw(cfg, key, b, t))


def _check_batch(cfg: TokenizerTrainConfig, batch):
    if "features" not in batch:
        raise ValueError(f"a tokenizer batch needs 'features' [B, T, h, w, C], got keys {sorted(batch)}")
    features = batch["features"]
    m = cfg.model
    if features.ndim != 5 or tuple(features.shape[2:]) != (*m.image_size, m.image_channels):
        raise ValueError(f"batch 'features' has shape {tuple(features.shape)}, expected "
                         f"[B, T, {m.image_size[0]}, {m.image_size[1]}, {m.image_channels}]")
    m.check_num_frames(features.shape[1])
    return features
