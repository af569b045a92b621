"""Semantic tokens of a long video, one group at a time (streaming generation).

The sequence is the original's for T semantic frames, as `sampler.sample(num_frames=T)` writes
it in one call: `[BOS][micro][text][SOI] group 0 [SOI] group 1 ... [EOS]`, micro-condition
`frames` = T, every group its own I-frame. `GroupStream.next_group` samples the G positions
after one group's START_OF_IFrame, up to and including the next group's (forced), feeding each
into the KV cache: one compiled function for every group (the group's forced tokens and
allowed specials are data). Each group is sampled whole, the last one too when T is not a
multiple of the group length: its extra frames come after the kept ones and cannot change them
(causal attention), so every call has the same shapes. Steps are numbered as in the one-shot
sampler (a draw's key is the step's), so without sliding the codes equal `sample`'s.

Sliding window: the cache holds the prefix and `window` groups. Before a group that would not
fit, the oldest group's G slots are dropped: the later slots move down by G and their keys are
rotated back by G positions (RoPE: R(p − G) = R(−G)·R(p)), so that every position stays inside
the cache and the original's RoPE table (`max_len`), the text prefix at its place. The default
window is the whole sequence when it fits in `max_len` (then the result is the original's),
else as many groups as fit.

On a mesh with the LM's weights replicated (`mesh=`), the prefill and the decode steps run per
device with the rows split, as in the one-shot sampler (`sampler.decode_rows`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from landiff_jax import progress as P
from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.model import layer_params
from landiff_jax.lm.sampler import STAGE, SampleOptions, _check_text, decode_rows, draw, micro_values, prefill
from landiff_jax.nn import apply_rope, rope_1d_angles


@functools.partial(jax.jit, static_argnames=("cfg", "guidance", "slots", "mesh"))
def _prefill(params, text_hidden, text_mask, micro, *, cfg: LMConfig, guidance: bool, slots: int,
             mesh: Mesh | None = None):
    soi = jnp.full((text_mask.shape[0], 1), L.Vocab(cfg.codebook_size)[L.SOI], jnp.int32)
    return prefill(params, cfg, text_hidden, text_mask, micro, soi, guidance, slots, mesh)


@functools.partial(jax.jit, static_argnames=("cfg", "length", "mesh"), donate_argnames="caches")
def group_steps(params, caches, logits, tokens, index, first_step, pads, rng, options: SampleOptions, forced, allow,
                start, *, cfg: LMConfig, length: int, mesh: Mesh | None = None):
    """Steps j in [start, start + length) of one group (start may be traced): step first_step + j,
    its token written to tokens [b G] at j and fed at slot index + j. forced [G] / allow [G 3]: the
    group's part of the frame layout. → (caches, logits of the next position, tokens). mesh: the
    decode steps per device (module docstring)."""
    rows, batch = logits.shape[0], tokens.shape[0]
    vocab, layers = L.Vocab(cfg.codebook_size), layer_params(params)
    decode = decode_rows(cfg, mesh, rows)

    def body(i, state):
        caches, logits, tokens = state
        j = start + i
        _, _, fed = draw(first_step + j, logits, allow[j], forced[j], options, rng, vocab, batch)
        tokens = jax.lax.dynamic_update_index_in_dim(tokens, fed, j, 1)
        logits, caches = decode(params, layers, jnp.tile(fed, rows // batch), caches, index + j, pads)
        return caches, logits, tokens

    return jax.lax.fori_loop(0, length, body, (caches, logits, tokens))


@functools.partial(jax.jit, static_argnames=("cfg", "start", "shift"), donate_argnames="caches")
def slide(caches, *, cfg: LMConfig, start: int, shift: int):
    """Drop slots [start, start + shift) of every layer's cache (k, v) [r h T d]: later slots move
    down by `shift`, their keys rotated back by `shift` positions (the last `shift` slots keep
    stale values that no query reads)."""
    angles = rope_1d_angles(jnp.full((1,), -shift), cfg.head_dim, cfg.rope_theta)  # [1 d/2]

    def move(cache, rotate: bool):
        tail = cache[:, :, start + shift:]
        if rotate:
            tail = jnp.swapaxes(apply_rope(jnp.swapaxes(tail, 1, 2), angles), 1, 2)
        return jax.lax.dynamic_update_slice_in_dim(cache, tail.astype(cache.dtype), start, axis=2)

    return tuple((move(k, True), move(v, False)) for k, v in caches)


class GroupStream:
    """The groups of one sequence of `num_frames` semantic frames, sampled one per `next_group`
    call (b prompts at once, as `sampler.sample` takes them: left-padded text, one key per prompt).

    window: groups the KV cache holds besides the prefix (None: see the module docstring).
    mesh: run per device with the rows split (the weights replicated on it; module docstring).
    """

    def __init__(self, params, cfg: LMConfig, text_hidden, text_mask, *, num_frames: int, motion_score,
                 options: SampleOptions, rng=None, window: int | None = None, progress: P.Callback | None = None,
                 progress_every: int | None = None, mesh: Mesh | None = None):
        num_frames = L.check_num_frames(num_frames)
        mask = _check_text(cfg, text_hidden, text_mask)
        batch, n = mask.shape
        if not options.greedy and (rng is None or np.shape(rng)[:1] != (batch,)):
            raise ValueError(f"sampling needs one PRNG key per prompt (rng with leading size {batch})")
        self.groups = -(-num_frames // cfg.segment_length)
        layout = L.frame_layout(cfg.codebook_size, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length,
                                self.groups * cfg.segment_length)
        self.group_length = g = layout.steps // self.groups  # positions after one SOI up to the next SOI
        self.prefix = len(L.prefix_kinds(n, len(cfg.micro_keys))) + 1  # ... [text][SOI]
        fits = (cfg.max_len - self.prefix) // g
        if fits < 1:
            raise ValueError(f"{n} text tokens leave no room for a group of {g} positions in max_len {cfg.max_len}")
        if window is not None and window < 1:
            raise ValueError(f"the LM window must hold at least one group, got {window}")
        self.window = min(window or self.groups, self.groups, fits)
        self.forced = layout.forced.reshape(self.groups, g)  # host arrays: a group's rows go in as data
        self.allow = layout.allow.reshape(self.groups, g, 3)
        self.code_steps = layout.code_steps[layout.code_steps < g]  # the same in every group
        self.cfg, self.params, self.options, self.rng, self.batch = cfg, params, options, rng, batch
        self.progress, self.progress_every, self.mesh = progress, progress_every, mesh
        micro = micro_values(cfg, num_frames, motion_score, batch)
        self.caches, self.logits, self.pads = _prefill(params, jnp.asarray(text_hidden), jnp.asarray(mask),
                                                       jnp.asarray(micro), cfg=cfg, guidance=options.guidance,
                                                       slots=self.prefix + self.window * g, mesh=mesh)
        self.done, self.index = 0, self.prefix

    def next_group(self) -> np.ndarray:
        """The next group's codes [b I + (S−1)·P] int32 (clamped to the codebook, as the one-shot's)."""
        if self.done == self.groups:
            raise StopIteration("every group of the sequence is written")
        g = self.group_length
        if self.index + g > self.prefix + self.window * g:
            self.caches = slide(self.caches, cfg=self.cfg, start=self.prefix, shift=g)
            self.index -= g
        state = (self.caches, self.logits, jnp.zeros((self.batch, g), jnp.int32))
        rest = (jnp.int32(self.index), jnp.int32(self.done * g), self.pads, self.rng, self.options,
                self.forced[self.done], self.allow[self.done])
        static = dict(cfg=self.cfg, mesh=self.mesh)
        if self.progress is None:
            state = group_steps(self.params, *state, *rest, jnp.int32(0), **static, length=g)
        else:  # blocks of about progress_every steps, reported over the whole sequence
            total = self.groups * g
            interval = self.progress_every or P.every(total)
            with P.compiling(STAGE, self.progress):
                P.compile_blocks(group_steps, lambda state: (self.params, *state, *rest, jnp.int32(0)), state, static,
                                 g, interval)

            def run_block(state, start, length):
                return group_steps(self.params, *state, *rest, jnp.int32(start), **static, length=length)

            state = P.run_blocks(run_block, state, g, self.progress, STAGE, total, interval,
                                 ready=lambda state: state[1], offset=self.done * g)
        self.caches, self.logits, tokens = state
        self.done, self.index = self.done + 1, self.index + g
        if self.done == self.groups:  # the cache is not needed any more: free it for the later stages
            self.caches = self.logits = None
        return np.clip(np.asarray(tokens)[:, self.code_steps], 0, self.cfg.codebook_size - 1)
