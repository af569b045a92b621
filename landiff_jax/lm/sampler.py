"""Guided sampling of semantic tokens: one jitted function (with progress: the prefill, blocks of
steps and the last draw, each its own, `sample`).

Prefill of the whole prefix (conditional and, with guidance, unconditional rows in one batch),
then a `lax.fori_loop` over positions with a preallocated KV cache (one buffer per layer,
carried by the loop and updated in place; see `model.decode`). Per step: guided logits
`u + g·(c − u)` in float32, divided by the temperature; at constrained steps a softmax
restricted to the allowed special tokens, elsewhere optional top-k / top-p; a greedy argmax
or a categorical draw from the row's own key; structural positions overwritten by their
token. Several prompts per call; rows never interact (each row has its own padding, RoPE
positions and key).

On a mesh with the weights replicated (`mesh=`; `runtime.lm_weights` decides), the prefill and
every decode step run per device inside `shard_map`, the rows (each prompt's conditional and
unconditional row) split over the mesh axes that divide them; the logits are gathered for the
guidance and the draw, which every device computes alike. No weight is sharded, so no all-reduce
runs per layer, and the decode kernel the config names runs on each device.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from landiff_jax import progress as P
from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.model import SemanticLM, decode, init_cache, layer_params, split_cache
from landiff_jax.parallel import batch_axes

STAGE = "LM sampler"


@flax.struct.dataclass
class SampleOptions:
    """Numbers are traced (changing them does not recompile); the switches are static."""

    guidance_scale: Any = 0.0
    temperature: Any = 1.0
    top_p: Any = 1.0
    top_k: int | None = flax.struct.field(pytree_node=False, default=None)
    use_top_p: bool = flax.struct.field(pytree_node=False, default=False)
    greedy: bool = flax.struct.field(pytree_node=False, default=False)
    guidance: bool = flax.struct.field(pytree_node=False, default=False)

    @classmethod
    def create(cls, guidance_scale: float = 0.0, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False) -> "SampleOptions":
        """Guidance is on when guidance_scale > 0 and != 1, as in the original."""
        if top_k is not None and top_p is not None:
            raise ValueError("top_k and top_p cannot be used together")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return cls(float(guidance_scale), float(temperature), float(1.0 if top_p is None else top_p), top_k,
                   top_p is not None, bool(greedy), bool(guidance_scale > 0 and guidance_scale != 1))


@flax.struct.dataclass
class SampleOutput:
    codes: jax.Array  # [b N] int32, tokenizer layout (I-frame codes, then P-frame codes), clamped to the codebook
    tokens: jax.Array  # [b S] int32, the token of every sampled position (structural tokens forced)
    draws: jax.Array  # [b S] int32, the draw of every step before structural tokens are forced
    logits: jax.Array | None = None  # [S r V] float32 per step, conditional rows then unconditional (trace)
    guided: jax.Array | None = None  # [S b V] float32 guided logits per step (trace)


def guide(logits, options: SampleOptions, batch: int):
    """[r V] -> [b V]: u + g·(c − u) with guidance, else the logits."""
    logits = logits.astype(jnp.float32)
    if not options.guidance:
        return logits
    cond, uncond = logits[:batch], logits[batch:]
    return uncond + options.guidance_scale * (cond - uncond)


def _top_k(x, k: int):
    kth = jax.lax.top_k(x, k)[0][..., -1:]
    return jnp.where(x < kth, -jnp.inf, x)


def _top_p(x, p):
    """Keep the most likely tokens until their mass reaches p (the one crossing p is kept)."""
    order = jnp.argsort(-x, axis=-1)
    probs = jnp.take_along_axis(jax.nn.softmax(x, axis=-1), order, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    drop_sorted = jnp.concatenate([jnp.zeros_like(probs[..., :1], bool), (mass_before >= p)[..., 1:]], axis=-1)
    drop = jnp.take_along_axis(drop_sorted, jnp.argsort(order, axis=-1), axis=-1)
    return jnp.where(drop, -jnp.inf, x)


def step_logits(guided, allow, options: SampleOptions, vocab: L.Vocab):
    """The logits a step draws from: guided / temperature, restricted to the allowed special
    tokens at a constrained step (allow [3]: START_OF_IFrame, START_OF_PFrame, EOS), else
    filtered by top-k / top-p."""
    x = guided / options.temperature
    ids = jnp.arange(vocab.size)
    special = jnp.zeros_like(ids, bool)
    for col, kind in enumerate((L.SOI, L.SOP, L.EOS)):
        special |= (ids == vocab[kind]) & allow[col]
    free = x  # (a greedy draw is unchanged by the filters; they still shape the distribution)
    if options.top_k is not None:
        free = _top_k(x, options.top_k)
    if options.use_top_p:
        free = _top_p(x, options.top_p)
    return jnp.where(jnp.any(allow), jnp.where(special, x, -jnp.inf), free)


def per_device_rows(fn, mesh: Mesh | None, rows: int, in_axes: tuple, out_axes: tuple):
    """fn run per device inside `shard_map`: the axis holding the `rows` of each argument / output
    (`in_axes` / `out_axes`; None: none, replicated) split over the mesh axes that divide `rows`;
    fn itself without a mesh."""
    if mesh is None:
        return fn
    split = batch_axes(mesh, rows) or None
    spec = lambda axis: PartitionSpec() if axis is None else PartitionSpec(*[None] * axis, split)  # noqa: E731
    return jax.shard_map(fn, mesh=mesh, in_specs=tuple(map(spec, in_axes)), out_specs=tuple(map(spec, out_axes)),
                         check_vma=False)


def decode_rows(cfg: LMConfig, mesh: Mesh | None, rows: int):
    """`model.decode` for a step of `rows` rows: on a mesh per device, the rows split (module docstring)."""
    return per_device_rows(functools.partial(decode, cfg), mesh, rows, (None, None, 0, 0, None, 0), (0, 0))


def draw(step, logits, allow, forced, options: SampleOptions, rng, vocab: L.Vocab, batch: int):
    """Sampled step `step` (its number keys the draws): logits [r V] of the position → (guided
    logits [b V], the draw [b], the token fed back [b]: `forced` (the structural token) when >= 0,
    else the draw). allow [3]: see `step_logits`."""
    guided = guide(logits, options, batch)
    x = step_logits(guided, allow, options, vocab)
    if options.greedy:
        drawn = jnp.argmax(x, axis=-1)
    else:
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(rng, step)
        drawn = jax.vmap(jax.random.categorical)(keys, x)
    drawn = drawn.astype(jnp.int32)
    return guided, drawn, jnp.where(forced >= 0, forced, drawn)


def prefill(params, cfg: LMConfig, text_hidden, text_mask, micro, video_tokens, guidance: bool, slots: int,
            mesh: Mesh | None = None):
    """The prefix [BOS][micro][text][video_tokens] (guided: conditional then unconditional rows)
    written into a fresh cache of at least `slots` slots → (per-layer caches, float32 logits [r V]
    of the position after the prefix, pads [r]). mesh: the forward pass per device, the rows split
    (axis 1 of the stacked cache; weights replicated)."""
    model = SemanticLM(cfg)
    x, pads = model.apply({"params": params}, text_hidden, text_mask, micro, video_tokens, guidance,
                          method=SemanticLM.prefix)
    forward = per_device_rows(lambda p, x, cache, pads: model.apply({"params": p}, x, cache, 0, pads,
                                                                    method=SemanticLM.forward),
                              mesh, x.shape[0], (None, 0, 1, 0), (0, 1))
    logits, cache = forward(params, x, init_cache(cfg, x.shape[0], slots), pads)
    return split_cache(cache), logits, pads


def _layout(cfg: LMConfig, num_frames: int, gt_first_frame: bool) -> L.FrameLayout:
    return L.frame_layout(cfg.codebook_size, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length, num_frames,
                          gt_first_frame=gt_first_frame)


def _prefix_length(cfg: LMConfig, layout: L.FrameLayout, text_length: int) -> int:
    """Positions before the first sampled step: [BOS][micro][text] and the layout's video prefix."""
    return len(L.prefix_kinds(text_length, len(cfg.micro_keys))) + layout.first_step


def _choose(layout: L.FrameLayout, options: SampleOptions, rng, batch: int, step, logits):
    return draw(step, logits, jnp.asarray(layout.allow)[step], jnp.asarray(layout.forced)[step], options, rng,
                layout.vocab, batch)


def _record(out: dict, trace: bool, step, logits, guided, drawn, fed) -> dict:
    """The loop's outputs with step `step` written: tokens fed, draws (and logits, guided: trace)."""
    put = lambda a, v, axis: jax.lax.dynamic_update_index_in_dim(a, v, step, axis)  # noqa: E731
    out = dict(out, tokens=put(out["tokens"], fed, 1), draws=put(out["draws"], drawn, 1))
    if trace:
        out.update(logits=put(out["logits"], logits, 0), guided=put(out["guided"], guided, 0))
    return out


def begin(params, text_hidden, text_mask, micro, first_frame_codes, options: SampleOptions, *, cfg: LMConfig,
          num_frames: int, trace: bool, mesh: Mesh | None = None):
    """The prefix prefilled → the loop's state: (per-layer caches, float32 logits [r V] of the
    first sampled position, outputs {tokens, draws [b steps] (+ logits, guided: trace)}), pads [r]."""
    layout = _layout(cfg, num_frames, first_frame_codes is not None)
    batch, steps = text_mask.shape[0], layout.steps
    video_tokens = jnp.broadcast_to(jnp.asarray(layout.prefix_video_tokens, jnp.int32), (batch, layout.first_step))
    if first_frame_codes is not None:  # the I-frame slots of the prefix take the given codes
        slots = np.flatnonzero(np.asarray(layout.prefix_video_tokens) == -1)
        video_tokens = video_tokens.at[:, slots].set(first_frame_codes.astype(jnp.int32))
    prefix = _prefix_length(cfg, layout, text_mask.shape[1])
    # the final draw (EOS) is never fed back
    caches, logits, pads = prefill(params, cfg, text_hidden, text_mask, micro, video_tokens, options.guidance,
                                   prefix + steps - 1, mesh)
    out = dict(tokens=jnp.zeros((batch, steps), jnp.int32), draws=jnp.zeros((batch, steps), jnp.int32))
    if trace:
        out.update(logits=jnp.zeros((steps, logits.shape[0], cfg.vocab_size), jnp.float32),
                   guided=jnp.zeros((steps, batch, cfg.vocab_size), jnp.float32))
    return (caches, logits, out), pads


def run_steps(params, caches, logits, out, pads, rng, options: SampleOptions, start, *, cfg: LMConfig,
              num_frames: int, gt_first_frame: bool, text_length: int, trace: bool, length: int,
              mesh: Mesh | None = None, fori_loop: Callable = jax.lax.fori_loop):
    """Steps [start, start + length) of the loop (start may be traced; the trip count is static,
    so XLA runs the loop as a plain one): each draws the step's token and feeds it through the
    decode step. → (caches, logits, out)."""
    layout = _layout(cfg, num_frames, gt_first_frame)
    batch, rows = out["tokens"].shape[0], logits.shape[0]
    prefix, layers, step_rows = _prefix_length(cfg, layout, text_length), layer_params(params), decode_rows(cfg, mesh, rows)

    def body(j, state):
        caches, logits, out = state
        step = start + j
        guided, drawn, fed = _choose(layout, options, rng, batch, step, logits)
        out = _record(out, trace, step, logits, guided, drawn, fed)
        logits, caches = step_rows(params, layers, jnp.tile(fed, rows // batch), caches, prefix + step, pads)
        return caches, logits, out

    return fori_loop(0, length, body, (caches, logits, out))


def finish(logits, out, rng, options: SampleOptions, first_frame_codes, *, cfg: LMConfig, num_frames: int,
           trace: bool) -> SampleOutput:
    """The last step's draw (never fed back) recorded, and the codes read from the tokens."""
    layout = _layout(cfg, num_frames, first_frame_codes is not None)
    batch, last = out["tokens"].shape[0], layout.steps - 1
    out = _record(out, trace, last, logits, *_choose(layout, options, rng, batch, last, logits))
    codes = jnp.clip(out["tokens"][:, layout.code_steps], 0, cfg.codebook_size - 1)
    if first_frame_codes is not None:
        codes = jnp.concatenate([first_frame_codes.astype(jnp.int32), codes], axis=1)
    return SampleOutput(codes=codes, **out)


def sample_loop(params, text_hidden, text_mask, micro, rng, options: SampleOptions, first_frame_codes, *,
                cfg: LMConfig, num_frames: int, trace: bool, fori_loop: Callable = jax.lax.fori_loop,
                mesh: Mesh | None = None) -> SampleOutput:
    """The whole sampling in one compiled call (`sample` without progress): `begin`, every step
    but the last (`run_steps`), `finish`."""
    gt_first_frame = first_frame_codes is not None
    (caches, logits, out), pads = begin(params, text_hidden, text_mask, micro, first_frame_codes, options, cfg=cfg,
                                        num_frames=num_frames, trace=trace, mesh=mesh)
    steps = _layout(cfg, num_frames, gt_first_frame).steps
    _, logits, out = run_steps(params, caches, logits, out, pads, rng, options, 0, cfg=cfg, num_frames=num_frames,
                               gt_first_frame=gt_first_frame, text_length=text_mask.shape[1], trace=trace,
                               length=steps - 1, mesh=mesh, fori_loop=fori_loop)
    return finish(logits, out, rng, options, first_frame_codes, cfg=cfg, num_frames=num_frames, trace=trace)


_sample_loop_jit = jax.jit(sample_loop, static_argnames=("cfg", "num_frames", "trace", "fori_loop", "mesh"))
_begin_jit = jax.jit(begin, static_argnames=("cfg", "num_frames", "trace", "mesh"))
_steps_jit = jax.jit(run_steps, static_argnames=("cfg", "num_frames", "gt_first_frame", "text_length", "trace",
                                                 "length", "mesh", "fori_loop"), donate_argnames="caches")
_finish_jit = jax.jit(finish, static_argnames=("cfg", "num_frames", "trace"))


def _sample_blocks(params, text_hidden, text_mask, micro, rng, options: SampleOptions, first_frame_codes, *,
                   cfg: LMConfig, num_frames: int, trace: bool, mesh: Mesh | None, progress: P.Callback,
                   progress_every: int | None, compile_only: bool) -> SampleOutput | None:
    """`sample` with progress: `begin`, the steps as host calls of blocks of about
    `progress_every` steps (default: up to `progress.UPDATES` reports; `progress.run_blocks`, the
    caches donated from block to block), and `finish`, each compiled first; the last step is
    reported after `finish`."""
    gt_first_frame = first_frame_codes is not None
    steps = _layout(cfg, num_frames, gt_first_frame).steps
    interval = progress_every or P.every(steps)
    head = (params, text_hidden, text_mask, micro, first_frame_codes, options)
    tail = (rng, options)
    finish_static = dict(cfg=cfg, num_frames=num_frames, trace=trace)
    begin_static = dict(finish_static, mesh=mesh)
    step_static = dict(begin_static, gt_first_frame=gt_first_frame, text_length=text_mask.shape[1])
    with P.compiling(STAGE, None if compile_only else progress):
        state, pads = _begin_jit.lower(*head, **begin_static).compile().out_info
        block = P.compile_blocks(_steps_jit, lambda state: (params, *state, pads, *tail,
                                                            jax.ShapeDtypeStruct((), jnp.int32)),
                                 state, step_static, steps - 1, interval)
        _, logits, out = next(iter(block.values())).out_info
        _finish_jit.lower(logits, out, *tail, first_frame_codes, **finish_static).compile()
    if compile_only:
        return None
    state, pads = _begin_jit(*head, **begin_static)

    def run_block(state, start, length):
        return _steps_jit(params, *state, pads, *tail, jnp.int32(start), **step_static, length=length)

    _, logits, out = P.run_blocks(run_block, state, steps - 1, progress, STAGE, steps, interval,
                                  ready=lambda state: state[1])
    result = _finish_jit(logits, out, *tail, first_frame_codes, **finish_static)
    P.report_when_ready(progress, STAGE, steps, steps, result.tokens)
    return result


def micro_values(cfg: LMConfig, frames, motion_score, batch: int) -> np.ndarray:
    """[b m] float32 micro-condition values in cfg.micro_keys order."""
    given = {"frames": frames, "motion_score": motion_score}
    missing = [k for k in cfg.micro_keys if k not in given]
    if missing:
        raise ValueError(f"no value for micro-condition(s) {missing}")
    cols = [np.broadcast_to(np.asarray(given[k], np.float32), (batch,)) for k in cfg.micro_keys]
    return np.stack(cols, axis=1)


def _check_text(cfg: LMConfig, text_hidden, text_mask) -> np.ndarray:
    mask = np.asarray(text_mask).astype(bool)
    if mask.ndim != 2 or tuple(text_hidden.shape) != mask.shape + (cfg.text_dim,):
        raise ValueError(f"text_hidden {tuple(text_hidden.shape)} / text_mask {mask.shape}: expected [b n {cfg.text_dim}] / [b n]")
    counts = mask.sum(axis=1)
    if (counts == 0).any():
        raise ValueError(f"text_mask rows {np.flatnonzero(counts == 0).tolist()} hold no token: the text condition "
                         "needs one")
    left_padded = mask == (np.arange(mask.shape[1])[None, :] >= (mask.shape[1] - counts)[:, None])
    if not left_padded.all():
        raise ValueError("text_mask must be left-padded (padding first, as the LM-side T5 tokenizer pads)")
    return mask


def sample(params, cfg: LMConfig, text_hidden, text_mask, *, num_frames: int, motion_score, options: SampleOptions,
           rng=None, frames=None, first_frame_codes=None, trace: bool = False, progress: P.Callback | None = None,
           progress_every: int | None = None, mesh: Mesh | None = None, compile_only: bool = False) -> SampleOutput:
    """Sample the semantic tokens of b prompts in one compiled call (one per block with progress).

    text_hidden [b n t] / text_mask [b n]: LM-side T5 output, left-padded (`encode_for_lm`).
    num_frames: semantic frames T (static; 13 for 49 video frames). motion_score: [b] or scalar.
    frames: the `frames` micro-condition (default num_frames, as the original's inference does).
    rng: one PRNG key per prompt ([b] keys; unused when greedy), so rows draw independently of
    how prompts are batched. first_frame_codes [b, iframe_tokens]: a ground-truth I-frame
    that the prefix then contains (the original's `use_gt_first_frame`).
    trace: also return per-step logits (cond/uncond) and guided logits.
    progress: called with the compile time and the sampled positions after each block of about
    `progress_every` of them (default: up to `progress.UPDATES` reports) and at the last; the
    loop then runs as host calls of blocks (`_sample_blocks`), with the same samples.
    mesh: run per device with the rows split (module docstring; params replicated on it).
    compile_only: compile what this call would run (params may be `jax.ShapeDtypeStruct`s)
    instead of running it; returns None.
    """
    num_frames = L.check_num_frames(num_frames)
    mask = _check_text(cfg, text_hidden, text_mask)
    batch, n = mask.shape
    layout = L.frame_layout(cfg.codebook_size, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length, num_frames,
                            gt_first_frame=first_frame_codes is not None)
    full_len = len(L.prefix_kinds(n, len(cfg.micro_keys))) + len(layout.kinds)
    if full_len > cfg.max_len:
        raise ValueError(f"{num_frames} frames with {n} text tokens need {full_len} positions > max_len {cfg.max_len}")
    if not options.greedy and (rng is None or np.shape(rng)[:1] != (batch,)):
        raise ValueError(f"sampling needs one PRNG key per prompt (rng with leading size {batch})")
    if first_frame_codes is not None:
        codes = np.asarray(first_frame_codes)
        if codes.shape != (batch, cfg.iframe_tokens) or codes.min() < 0 or codes.max() >= cfg.codebook_size:
            raise ValueError(f"first_frame_codes must be [{batch}, {cfg.iframe_tokens}] codes in [0, {cfg.codebook_size})")
        first_frame_codes = jnp.asarray(codes, jnp.int32)
    micro = micro_values(cfg, num_frames if frames is None else frames, motion_score, batch)
    args = (params, jnp.asarray(text_hidden), jnp.asarray(mask), jnp.asarray(micro), rng, options, first_frame_codes)
    static = dict(cfg=cfg, num_frames=num_frames, trace=trace, mesh=mesh)
    if progress is not None:
        return _sample_blocks(*args, **static, progress=progress, progress_every=progress_every,
                              compile_only=compile_only)
    if compile_only:
        P.call_jitted(_sample_loop_jit, args, static, STAGE, None, compile_only=True)
        return None
    return _sample_loop_jit(*args, **static)
