"""T5 encoder (v1.1 / Flan style) as a pure Linen module.

Differences from a textbook transformer, all as in the original:
- pre-norm RMS layer norms without mean subtraction or bias, and no biases anywhere;
- no 1/sqrt(d) scaling of q·kᵀ;
- a learned relative position bias (bidirectional log-spaced buckets) computed once, from the
  first layer's table, and added to the logits of every layer;
- gated feed-forward wo(gelu_tanh(wi_0 x) · wi_1 x).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from landiff_jax.nn import GatedMlp, RMSNorm, dense, dot_product_attention, scan_layers
from landiff_jax.nn.mlp import gelu_tanh
from landiff_jax.text.config import T5Config


def relative_position_buckets(query_length: int, key_length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """Bucket [q k] (int32) of each relative position key − query, bidirectional.

    Half the buckets are for keys after the query. Within a half, distances below a quarter of
    the buckets get their own bucket; longer ones are log-spaced up to `max_distance` and
    beyond it share the last bucket. Computed on the host in float32 (lengths are static), in
    the original's order of operations so that bucket borders fall where they do there.
    """
    relative = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]
    half = num_buckets // 2
    max_exact = half // 2
    distance = np.abs(relative)
    scaled = np.maximum(distance, 1).astype(np.float32) / np.float32(max_exact)
    log_fraction = np.log(scaled) / np.float32(math.log(max_distance / max_exact))
    far = max_exact + (log_fraction * np.float32(half - max_exact)).astype(np.int64)
    far = np.minimum(far, half - 1)
    near_or_far = np.where(distance < max_exact, distance, far)
    return (np.where(relative > 0, half, 0) + near_or_far).astype(np.int32)


def position_bias(table, query_length: int, key_length: int, cfg: T5Config):
    """Relative position bias [1 h q k] from the learned table [buckets h]."""
    buckets = relative_position_buckets(
        query_length, key_length, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
    )
    bias = jnp.take(table.astype(cfg.dtype), jnp.asarray(buckets), axis=0)  # q k h
    return jnp.transpose(bias, (2, 0, 1))[None]


class T5SelfAttention(nn.Module):
    cfg: T5Config

    @nn.compact
    def __call__(self, x, bias, mask):
        # x: [b s d]; bias: [1 h s s] float; mask: [b 1 1 s] bool or None
        cfg = self.cfg
        b, s, _ = x.shape
        kw = dict(use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        q, k, v = (
            dense(cfg.inner_dim, ("embed", "heads"), name=name, **kw)(x).reshape(b, s, cfg.num_heads, cfg.d_kv)
            for name in ("q", "k", "v")
        )
        out = dot_product_attention(q, k, v, bias=bias, mask=mask, scale=1.0, implementation=cfg.attention_implementation)
        return dense(cfg.d_model, ("heads", "embed"), name="o", **kw)(out.reshape(b, s, cfg.inner_dim))


class T5Block(nn.Module):
    """x + attention(norm(x)), then + gated MLP(norm(x)). Returns (x, None) for scanning."""

    cfg: T5Config

    @nn.compact
    def __call__(self, x, bias, mask):
        cfg = self.cfg
        norm = dict(eps=cfg.layer_norm_epsilon, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        x = x + T5SelfAttention(cfg, name="attention")(RMSNorm(**norm, name="attention_norm")(x), bias, mask)
        mlp = GatedMlp(cfg.d_ff, act=gelu_tanh, use_bias=False, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name="mlp")
        return x + mlp(RMSNorm(**norm, name="mlp_norm")(x)), None


class T5Encoder(nn.Module):
    """input_ids [b s] int, attention_mask [b s] (1/True = real token) or None → last_hidden_state [b s d].

    With `attention_mask=None` every position attends every other, padding included (the
    diffusion side's use).
    """

    cfg: T5Config

    @nn.compact
    def __call__(self, input_ids, attention_mask=None):
        cfg = self.cfg
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 2 or not jnp.issubdtype(input_ids.dtype, jnp.integer):
            raise ValueError(f"input_ids must be an integer array [batch, length], got {input_ids.dtype}{input_ids.shape}")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {attention_mask.shape} != input_ids shape {input_ids.shape}")
        length = input_ids.shape[1]

        x = nn.Embed(
            cfg.vocab_size, cfg.d_model, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
            name="token_embedding",
        )(input_ids)
        table = self.param(
            "relative_attention_bias",
            nn.with_logical_partitioning(nn.initializers.normal(1.0), (None, "heads")),
            (cfg.relative_attention_num_buckets, cfg.num_heads), cfg.param_dtype,
        )
        bias = position_bias(table, length, length, cfg)
        mask = None if attention_mask is None else jnp.asarray(attention_mask, bool)[:, None, None, :]
        x, _ = scan_layers(T5Block, cfg.num_layers, in_axes=(nn.broadcast, nn.broadcast), cfg=cfg)(x, bias, mask)
        return RMSNorm(cfg.layer_norm_epsilon, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name="final_norm")(x)


def abstract_params(cfg: T5Config):
    """Shapes/dtypes (and logical names) of T5Encoder(cfg)'s params, without computing anything."""
    ids = jax.ShapeDtypeStruct((1, 1), jnp.int32)
    return jax.eval_shape(T5Encoder(cfg).init, jax.random.key(0), ids)["params"]
