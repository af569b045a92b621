"""Frame-group attention masks and 3D RoPE positions of the tokenizer's sequence.

The sequence of a clip of T frames is [visual tokens (t, h, w raster), latent tokens], with
V = T·F visual tokens (F per frame) followed by I I-frame queries and (T−1)·P P-frame queries.
Masks are boolean [S, S] (True = query row may attend key column), built from iotas so that
inside a jitted function they cost nothing to store. Each function is jitted with the config
and frame count static (one small compilation per clip length when called eagerly).

The model attends through `FrameMask`, the same masks as the work they leave: the visual
queries of frame f see a prefix of the keys (in a fixed key order), so each frame's block runs
unmasked over just that prefix, and only the latent queries (6.5 % of the rows at full size)
attend under a mask. A dense [S, S] mask would have every attention kernel read S² mask
entries per head and compute the half of the scores it then throws away.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from landiff_jax.nn import dot_product_attention, rope_3d_angles
from landiff_jax.tokenizer.config import TokenizerConfig


def _layout(config: TokenizerConfig, num_frames: int, first_row: int = 0):
    config.check_num_frames(num_frames)
    n = config.seq_len(num_frames)
    q = jnp.arange(first_row, n)[:, None]
    k = jnp.arange(n)[None, :]
    F, I, P = config.tokens_per_frame, config.iframe_tokens, config.pframe_tokens
    V = num_frames * F
    return q, k, F, I, max(P, 1), V


def _query_frame(q, F, I, P, V):
    """The frame a query belongs to: its visual frame, 0 for I-queries, 1.. for P-queries."""
    return jnp.where(q < V, q // F, jnp.where(q < V + I, 0, (q - V - I) // P + 1))


_static = functools.partial(jax.jit, static_argnums=(0, 1))
_static_rows = functools.partial(jax.jit, static_argnums=(0, 1, 2))


@_static_rows
def encoder_mask(config: TokenizerConfig, num_frames: int, first_row: int = 0):
    """[S, S] bool ([S − first_row, S] from row first_row). Visual queries see visual frames ≤
    their own; I-queries see frame 0 and the I-queries k ≤ q; P-queries of frame f see visual
    frames ≤ f and every latent token k ≤ q."""
    q, k, F, I, P, V = _layout(config, num_frames, first_row)
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


@_static_rows
def decoder_mask(config: TokenizerConfig, num_frames: int, first_row: int = 0):
    """[S, S] bool ([S − first_row, S] from row first_row). Tokens of frame f (visual or latent;
    I-queries are frame 0) see visual frames ≤ f and the latent tokens of frames ≤ f
    (k < V + I + f·P), bidirectionally within a frame."""
    q, k, F, I, P, V = _layout(config, num_frames, first_row)
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


@struct.dataclass
class FrameMask:
    """An encoder or decoder mask as work. The sequence's keys are taken in `key_order` (slices
    (start, stop) of it, concatenated); the F queries of visual frame f attend the first
    `prefix[f]` of them, unmasked; the latent queries (rows V = T·F onwards) attend every key
    under `latent_rows` [S − V, S] bool."""

    latent_rows: jax.Array
    frame_tokens: int = struct.field(pytree_node=False)
    key_order: tuple[tuple[int, int], ...] = struct.field(pytree_node=False)
    prefix: tuple[int, ...] = struct.field(pytree_node=False)

    def pairs(self) -> int:
        """How many (query, key) pairs the mask lets attend."""
        return self.frame_tokens * sum(self.prefix) + int(jnp.sum(self.latent_rows))


def encoder_frames(config: TokenizerConfig, num_frames: int) -> FrameMask:
    """`encoder_mask` as a FrameMask: visual frame f sees visual frames ≤ f, a prefix of the
    sequence itself."""
    F, V = config.tokens_per_frame, num_frames * config.tokens_per_frame
    return FrameMask(encoder_mask(config, num_frames, V), F, ((0, V),),
                     tuple((f + 1) * F for f in range(num_frames)))


def decoder_frames(config: TokenizerConfig, num_frames: int) -> FrameMask:
    """`decoder_mask` as a FrameMask: keys ordered frame by frame, [visual 0, I-queries, visual 1,
    P-queries of frame 1, …], so that visual frame f's keys (visual frames ≤ f and the latent
    tokens of frames ≤ f) are a prefix."""
    F, I, P = config.tokens_per_frame, config.iframe_tokens, config.pframe_tokens
    V = num_frames * F
    order, prefix, latent = [], [], V
    for f in range(num_frames):
        width = I if f == 0 else P
        order += [(f * F, (f + 1) * F), (latent, latent + width)]
        latent += width
        prefix.append((f + 1) * F + latent - V)
    return FrameMask(decoder_mask(config, num_frames, V), F, tuple(o for o in order if o[1] > o[0]), tuple(prefix))


def frame_attention(q, k, v, frames: FrameMask, implementation: str | None = None):
    """softmax(q·kᵀ/√d) v [b S h d] under the mask `frames` stands for: one unmasked attention per
    visual frame over its key prefix, one masked attention for the latent rows.

    'xla' (or None) runs them blockwise whatever their size: XLA keeps the score matrices of all
    these calls alive together in the backward (one clip at full size: 6.3 GB against 0.8 GB for
    one dense-masked call)."""
    if implementation in (None, "xla"):
        implementation = "blockwise"
    F = frames.frame_tokens
    V = F * len(frames.prefix)

    def ordered(x):
        return jnp.concatenate([x[:, a:b] for a, b in frames.key_order], axis=1)

    keys, values = ordered(k), ordered(v)
    out = [dot_product_attention(q[:, f * F:(f + 1) * F], keys[:, :n], values[:, :n], implementation=implementation)
           for f, n in enumerate(frames.prefix)]
    out.append(dot_product_attention(q[:, V:], k, v, mask=frames.latent_rows[None, None],
                                     implementation=implementation))
    return jnp.concatenate(out, axis=1)
