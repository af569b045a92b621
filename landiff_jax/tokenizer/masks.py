"""Frame-group attention masks and 3D RoPE positions of the tokenizer's sequence.

The sequence of a clip of T frames is [visual tokens (t, h, w raster), latent tokens], with
V = T·F visual tokens (F per frame) followed by I I-frame queries and (T−1)·P P-frame queries.
Masks are boolean [S, S] (True = query row may attend key column), built from iotas so that
inside a jitted function they cost nothing to store. Each function is jitted with the config
and frame count static (one small compilation per clip length when called eagerly).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from landiff_jax.nn import rope_3d_angles
from landiff_jax.tokenizer.config import TokenizerConfig


def _layout(config: TokenizerConfig, num_frames: int):
    config.check_num_frames(num_frames)
    n = config.seq_len(num_frames)
    q = jnp.arange(n)[:, None]
    k = jnp.arange(n)[None, :]
    F, I, P = config.tokens_per_frame, config.iframe_tokens, config.pframe_tokens
    V = num_frames * F
    return q, k, F, I, max(P, 1), V


def _query_frame(q, F, I, P, V):
    """The frame a query belongs to: its visual frame, 0 for I-queries, 1.. for P-queries."""
    return jnp.where(q < V, q // F, jnp.where(q < V + I, 0, (q - V - I) // P + 1))


_static = functools.partial(jax.jit, static_argnums=(0, 1))


@_static
def encoder_mask(config: TokenizerConfig, num_frames: int):
    """[S, S] bool. Visual queries see visual frames ≤ their own; I-queries see frame 0 and the
    I-queries k ≤ q; P-queries of frame f see visual frames ≤ f and every latent token k ≤ q."""
    q, k, F, I, P, V = _layout(config, num_frames)
    frame = _query_frame(q, F, I, P, V)
    key_visual = k < V
    visible_frames = key_visual & (k < (frame + 1) * F)
    causal_latent = ~key_visual & (k <= q)
    is_iquery = (q >= V) & (q < V + I)
    return jnp.where(
        q < V,
        visible_frames,
        visible_frames | (causal_latent & jnp.where(is_iquery, k < V + I, True)),
    )


@_static
def decoder_mask(config: TokenizerConfig, num_frames: int):
    """[S, S] bool. Tokens of frame f (visual or latent; I-queries are frame 0) see visual frames
    ≤ f and the latent tokens of frames ≤ f (k < V + I + f·P), bidirectionally within a frame."""
    q, k, F, I, P, V = _layout(config, num_frames)
    frame = _query_frame(q, F, I, P, V)
    visible_frames = (k < V) & (k < (frame + 1) * F)
    visible_latents = (k >= V) & (k < V + I + frame * config.pframe_tokens)
    return visible_frames | visible_latents


@_static
def rope_positions(config: TokenizerConfig, num_frames: int):
    """[S, 3] int32 (t, h, w): visual tokens at their grid position, latent token i at (i, i, i)."""
    config.check_num_frames(num_frames)
    gh, gw = config.grid
    t, h, w = jnp.meshgrid(jnp.arange(num_frames), jnp.arange(gh), jnp.arange(gw), indexing="ij")
    visual = jnp.stack([t, h, w], axis=-1).reshape(-1, 3)
    latent = jnp.repeat(jnp.arange(config.num_codes(num_frames))[:, None], 3, axis=1)
    return jnp.concatenate([visual, latent], axis=0).astype(jnp.int32)


@_static
def rope_angles(config: TokenizerConfig, num_frames: int):
    """[S, head_dim/2] float32 rotation angles of the sequence's 3D RoPE."""
    pos = rope_positions(config, num_frames)
    return rope_3d_angles(pos[:, 0], pos[:, 1], pos[:, 2], config.head_dim, config.rope_theta)
