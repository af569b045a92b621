"""The guided DPM++(2M) SDE sampler (VPSDEDPMPP2MSampler + DynamicCFG) as ONE jitted `lax.scan`.

Every per-step constant (sqrt(ā), timestep, CFG scale, update coefficients) is computed on the
host (`schedule.step_schedule`) and scanned over as arrays. Each step runs the control DiT once
on the doubled batch [uncond; cond], combines the two x0 predictions with the step's CFG scale and
applies the update. Noise comes from an explicit key, or from injected arrays in the original's
draw order (`init_noise`, and `step_noise` holding every `randn_like` call, discarded ones
included). Latents are channels-last [b t H W c], float32.

On a mesh the network runs per device inside `shard_map`, laid out by the mesh's shape
(`parallel.guided_layout`): the guidance batch split over the `data`/`fsdp` axes (CFG-parallel),
each sequence over the others (sequence-parallel, `ControlDiT(sequence=...)`); the attention
kernel the config names runs on each device. The sampler update runs outside, on whole arrays.

A clean prefix (streaming: the previous chunk's last latents) is the original's sampler
`fixed_frames` rule: its frames replace those of x before every step and after the last, so the
network always sees them clean, at the step's own timestep: the released code has one time
condition per sample (the paper's prefix "time condition t to 0.999" has no counterpart there).
How many frames are kept is data, not a static argument: every chunk runs one compiled loop.
The prefix is applied in the update, outside `shard_map`, so every mesh layout streams alike.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from landiff_jax import progress as P
from landiff_jax.diffusion.config import DiTConfig, SamplerConfig
from landiff_jax.diffusion.denoiser import denoise, video_scalings
from landiff_jax.diffusion.dit import ControlDiT
from landiff_jax.diffusion.schedule import (
    StepSchedule,
    denoiser_sigma_table,
    num_noise_draws,
    step_schedule,
    used_noise_draws,
)
from landiff_jax.parallel import guided_layout

STAGE = "diffusion sampler"


class StepInputs(NamedTuple):
    """What step i reads (leading axis = steps when stacked)."""

    index: jnp.ndarray  # int32
    alpha: jnp.ndarray  # sqrt(ā) of this step (the denoiser's sigma)
    timestep: jnp.ndarray  # the network's noise input
    cfg_scale: jnp.ndarray
    mult1: jnp.ndarray
    mult2: jnp.ndarray
    w_cur: jnp.ndarray
    w_old: jnp.ndarray
    noise_mult: jnp.ndarray
    noise: jnp.ndarray | None  # [b t H W c] injected ε, or None to draw from the key


class Carry(NamedTuple):
    x: jnp.ndarray  # [b t H W c] float32
    old_denoised: jnp.ndarray  # previous step's guided x0 (zeros before step 0)


def step_inputs(schedule: StepSchedule, noise=None) -> StepInputs:
    f32 = lambda a: jnp.asarray(np.asarray(a, np.float32))
    return StepInputs(
        index=jnp.arange(schedule.num_steps, dtype=jnp.int32),
        alpha=f32(schedule.step_alpha),
        timestep=f32(schedule.step_timestep),
        cfg_scale=f32(schedule.cfg_scale),  # computed in float64, applied in float32 as the original
        mult1=f32(schedule.mult1), mult2=f32(schedule.mult2), w_cur=f32(schedule.w_cur),
        w_old=f32(schedule.w_old), noise_mult=f32(schedule.noise_mult),
        noise=noise,
    )


def guided_network(cfg: DiTConfig, params, context_pair, semantic_feature, mesh: Mesh | None = None):
    """network(x_in [r t H W c], c_noise [r]) -> the ControlDiT output for the guidance batch of
    r rows (context_pair [r L D]); with a mesh, run per device (module docstring)."""
    def apply(params, x_in, c_noise, context, feature, sequence=None):
        return ControlDiT(cfg, sequence=sequence).apply({"params": params}, x_in, c_noise, context, feature)

    if mesh is None:
        return lambda x_in, c_noise: apply(params, x_in, c_noise, context_pair, semantic_feature)
    rows, frames = context_pair.shape[0], semantic_feature.shape[1]
    layout = guided_layout(mesh, rows)
    split = layout.split(mesh, cfg.text_length + cfg.num_video_tokens(frames))
    batch = PartitionSpec(layout.batch or None)
    feature = batch if semantic_feature.shape[0] == rows else PartitionSpec()
    per_device = jax.shard_map(lambda *args: apply(*args, sequence=split), mesh=mesh, out_specs=batch,
                               in_specs=(PartitionSpec(), batch, batch, batch, feature), check_vma=False)
    return lambda x_in, c_noise: per_device(params, x_in, c_noise, context_pair, semantic_feature)


def guided_step(cfg: DiTConfig, params, context_pair, semantic_feature, sigma_table, key, carry: Carry,
                step: StepInputs, mesh: Mesh | None = None):
    """One sampler step → (new carry, (x_in, x_out, denoised, pair_denoised)). With a mesh, the
    network runs per device (module docstring)."""
    x = carry.x
    b = x.shape[0]
    network = guided_network(cfg, params, context_pair, semantic_feature, mesh)
    pair = jnp.concatenate([x, x])  # [uncond; cond]
    scalings = video_scalings(jnp.full((2 * b,), step.alpha), jnp.full((2 * b,), step.timestep), sigma_table)
    pair_denoised = denoise(network, pair, scalings)
    uncond, cond = pair_denoised[:b], pair_denoised[b:]
    denoised = uncond + step.cfg_scale * (cond - uncond)
    noise = step.noise
    if noise is None:
        noise = jax.random.normal(jax.random.fold_in(key, step.index), x.shape, jnp.float32)
    denoised_d = step.w_cur * denoised - step.w_old * carry.old_denoised
    x_out = step.mult1 * x - step.mult2 * denoised_d + step.noise_mult * noise
    return Carry(x_out, denoised), (x, x_out, denoised, pair_denoised)


def keep_prefix(x, prefix, prefix_frames):
    """x [b t H W c] with its first `prefix_frames` (traced int) frames replaced by `prefix`'s."""
    if prefix is None:
        return x
    kept = jnp.arange(x.shape[1]) < prefix_frames
    return jnp.where(kept[None, :, None, None, None], prefix, x)


def scan_steps(params, steps: StepInputs, carry: Carry, context, uncond_context, semantic_feature, sigma_table, key,
               prefix, prefix_frames, *, cfg: DiTConfig, trajectory: bool, mesh: Mesh | None):
    """`guided_step` scanned over `steps` (see `step_inputs`) from carry → (carry, per-step outputs
    | None). prefix [b t H W c] / prefix_frames (int32 scalar): the clean frames kept
    (`keep_prefix`) before every step and after the last (so the carry returned holds them too);
    None: none."""
    context_pair = jnp.concatenate([uncond_context, context])
    if semantic_feature.shape[0] > 1:  # one feature per prompt, for both guidance rows
        semantic_feature = jnp.concatenate([semantic_feature, semantic_feature])
    step_fn = functools.partial(guided_step, cfg, params, context_pair, semantic_feature, sigma_table, key, mesh=mesh)

    def body(carry, step):
        carry, outputs = step_fn(carry._replace(x=keep_prefix(carry.x, prefix, prefix_frames)), step)
        return carry, outputs if trajectory else None

    carry, per_step = jax.lax.scan(body, carry, steps)
    return carry._replace(x=keep_prefix(carry.x, prefix, prefix_frames)), per_step


@functools.partial(jax.jit, static_argnames=("cfg", "trajectory", "mesh"))
def sample_loop(params, steps: StepInputs, x_init, context, uncond_context, semantic_feature, sigma_table, key,
                prefix=None, prefix_frames=None, *, cfg: DiTConfig, trajectory: bool = False,
                mesh: Mesh | None = None):
    """The whole loop in one compiled call (`sample` without progress): `scan_steps` over every
    step from x_init; key draws the per-step noise when steps.noise is None. → (x, per-step
    outputs | None)."""
    carry, per_step = scan_steps(params, steps, Carry(x_init, jnp.zeros_like(x_init)), context, uncond_context,
                                 semantic_feature, sigma_table, key, prefix, prefix_frames, cfg=cfg,
                                 trajectory=trajectory, mesh=mesh)
    return carry.x, per_step


@functools.partial(jax.jit, static_argnames=("cfg", "trajectory", "mesh", "length"))
def sample_block(params, steps: StepInputs, carry: Carry, start, context, uncond_context, semantic_feature,
                 sigma_table, key, prefix=None, prefix_frames=None, *, cfg: DiTConfig, trajectory: bool = False,
                 mesh: Mesh | None = None, length: int):
    """Steps [start, start + length) of the loop (`sample` with progress: one call per block,
    `progress.run_blocks`) → (carry, per-step outputs | None). start: int32 data, so every block
    of one length runs one compiled function."""
    block = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, length), steps)
    return scan_steps(params, block, carry, context, uncond_context, semantic_feature, sigma_table, key, prefix,
                      prefix_frames, cfg=cfg, trajectory=trajectory, mesh=mesh)


def initial_latent(shape, *, key=None, init_noise=None):
    """x_T: `init_noise` or a standard normal draw from `key` (not scaled)."""
    if init_noise is None:
        if key is None:
            raise ValueError("give either key or init_noise")
        init_noise = jax.random.normal(key, shape, jnp.float32)
    x = jnp.asarray(init_noise, jnp.float32)
    if x.shape != tuple(shape):
        raise ValueError(f"init_noise has shape {x.shape}, expected {tuple(shape)}")
    return x


def full_prefix(prefix, shape, prefix_frames=None):
    """A clean prefix [b p H W c] (p ≤ t) → ([b t H W c] zero-padded, int32 count: `prefix_frames`
    (≤ p, may be traced) or p)."""
    prefix = jnp.asarray(prefix, jnp.float32)
    b, t, *rest = shape
    if prefix.ndim != 5 or prefix.shape[0] != b or prefix.shape[2:] != tuple(rest) or prefix.shape[1] > t:
        raise ValueError(f"prefix must be [{shape[0]}, ≤{shape[1]}, {', '.join(map(str, shape[2:]))}], "
                         f"got {prefix.shape}")
    count = prefix.shape[1] if prefix_frames is None else prefix_frames
    padded = jnp.pad(prefix, ((0, 0), (0, shape[1] - prefix.shape[1]), (0, 0), (0, 0), (0, 0)))
    return padded, jnp.asarray(count, jnp.int32)


def injected_step_noise(step_noise, num_steps: int, shape):
    """The original's draw stream [1 + 2(n−2), b, t, H, W, c] → the ε each step uses [n, ...] (zeros
    at the last step, which draws none)."""
    step_noise = jnp.asarray(step_noise, jnp.float32)
    want = (num_noise_draws(num_steps), *shape)
    if step_noise.shape != want:
        raise ValueError(f"step_noise has shape {step_noise.shape}, expected {want} (draws in call order)")
    used = step_noise[used_noise_draws(num_steps)]
    return jnp.concatenate([used, jnp.zeros((1, *shape), jnp.float32)])


def sample(params, cfg: DiTConfig, sampler_cfg: SamplerConfig, context, uncond_context, semantic_feature, *,
           key=None, init_noise=None, step_noise=None, prefix=None, prefix_frames=None, trajectory: bool = False,
           mesh: Mesh | None = None, progress: P.Callback | None = None, progress_every: int | None = None,
           compile_only: bool = False):
    """Run the whole guided sampling loop (one jitted scan, or one per block with progress).

    params: the ControlDiT params ('dit' of the converted tree). context / uncond_context:
    [b, text_length, text_hidden] (the original's uc is zeros). semantic_feature: [1 or b, t, H, W,
    c] from the semantic conditioner. Noise: `key` (init and per-step draws), or `init_noise`
    [b t H W c] and `step_noise` (the original's draw stream, see `injected_step_noise`).
    prefix [b p H W c]: clean latents of the first frames, kept at every step (the original's
    `prefix` with its sampler's `fixed_frames`); prefix_frames: how many of them (default p; an
    int or int32 array, data: any count reuses the compiled loop of a prefix of that shape).
    mesh: run the network per device, CFG- and sequence-parallel by the mesh's shape (module
    docstring; params as placed by the caller, replicated).
    progress: compile time and steps done; the loop then runs as one call per block of about
    `progress_every` steps (`_sample_blocks`), with the same samples.
    compile_only: compile what this call would run (params may be `jax.ShapeDtypeStruct`s) and
    return the samples' `jax.ShapeDtypeStruct` (sharding included) instead of running it.
    Returns samples [b t H W c] float32, and with `trajectory` a dict of per-step arrays
    (step_x_in, step_x_out, step_denoised, step_pair_denoised, each [n, ...]).
    """
    context = jnp.asarray(context)
    b = context.shape[0]
    if uncond_context.shape != context.shape:
        raise ValueError(f"uncond_context has shape {uncond_context.shape}, context {context.shape}")
    shape = (b, semantic_feature.shape[1], cfg.latent_height, cfg.latent_width, cfg.in_channels)
    init_key = step_key = None
    if key is not None:
        init_key, step_key = jax.random.split(key)
    x_init = initial_latent(shape, key=init_key, init_noise=init_noise)
    if prefix is not None:
        prefix, prefix_frames = full_prefix(prefix, shape, prefix_frames)
    schedule = step_schedule(sampler_cfg)
    noise = None
    if step_noise is not None:
        noise = injected_step_noise(step_noise, sampler_cfg.num_steps, shape)
    elif step_key is None:
        raise ValueError("give either key or step_noise")
    table = jnp.asarray(denoiser_sigma_table(sampler_cfg.denoiser_num_idx, sampler_cfg.denoiser_shift_scale))
    steps = step_inputs(schedule, noise)
    rest = (jnp.asarray(context), jnp.asarray(uncond_context), jnp.asarray(semantic_feature), table, step_key, prefix,
            prefix_frames)
    static = dict(cfg=cfg, trajectory=trajectory, mesh=mesh)
    if progress is not None:
        samples, per_step = _sample_blocks(params, steps, x_init, rest, static, progress, progress_every, compile_only)
    elif compile_only:
        return P.call_jitted(sample_loop, (params, steps, x_init, *rest), static, STAGE, None, True).out_info[0]
    else:
        samples, per_step = sample_loop(params, steps, x_init, *rest, **static)
    if not trajectory or compile_only:
        return samples
    names = ("step_x_in", "step_x_out", "step_denoised", "step_pair_denoised")
    return samples, dict(zip(names, per_step))


def _sample_blocks(params, steps: StepInputs, x_init, rest: tuple, static: dict, progress: P.Callback,
                   progress_every: int | None, compile_only: bool):
    """`sample` with progress: the loop as `sample_block` calls, one per block of about
    `progress_every` steps (default: up to `progress.UPDATES` reports), each distinct block
    length compiled first. → (samples, per-step outputs | None); compile_only: (the samples'
    `jax.ShapeDtypeStruct`, None)."""
    total = steps.index.shape[0]
    interval = progress_every or P.every(total)
    carry = Carry(x_init, jnp.zeros_like(x_init))
    start = jax.ShapeDtypeStruct((), jnp.int32)
    with P.compiling(STAGE, None if compile_only else progress):
        compiled = P.compile_blocks(sample_block, lambda carry: (params, steps, carry, start, *rest), carry, static,
                                    total, interval, state_of=lambda out: out[0])
    if compile_only:
        return next(iter(compiled.values())).out_info[0].x, None
    outputs = []

    def run_block(carry, start, length):
        carry, per_step = sample_block(params, steps, carry, jnp.int32(start), *rest, **static, length=length)
        outputs.append(per_step)
        return carry

    carry = P.run_blocks(run_block, carry, total, progress, STAGE, total, interval, ready=lambda c: c.x)
    per_step = None if outputs[0] is None else jax.tree.map(lambda *a: jnp.concatenate(a), *outputs)
    return carry.x, per_step
