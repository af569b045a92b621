"""The scanned guided sampler equals a Python loop over the same step; noise handling."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax.diffusion.config import DiTConfig, SamplerConfig
from landiff_jax.diffusion.dit import ControlDiT
from landiff_jax.diffusion.sampler import Carry, guided_step, initial_latent, injected_step_noise, sample, step_inputs
from landiff_jax.diffusion.schedule import denoiser_sigma_table, num_noise_draws, step_schedule

CFG = DiTConfig.tiny(num_layers=2, control_layers=1, latent_frames=2, latent_height=4, latent_width=4, text_length=3)
SAMPLER = SamplerConfig(num_steps=4, cfg_num_steps=4)


@pytest.fixture(scope="module")
def setup():
    k = jax.random.split(jax.random.key(0), 5)
    b, t = 2, CFG.latent_frames
    shape = (b, t, CFG.latent_height, CFG.latent_width, CFG.in_channels)
    context = jax.random.normal(k[0], (b, CFG.text_length, CFG.text_hidden_size))
    semantic = 0.1 * jax.random.normal(k[1], (1, *shape[1:]))
    abstract = jax.eval_shape(ControlDiT(CFG).init, k[2], jnp.zeros(shape), jnp.zeros(b), context, semantic)
    rng = np.random.default_rng(0)  # numpy draws: compiling a jitted init costs more than the whole test
    params = jax.tree.map(lambda a: jnp.asarray(0.2 * rng.standard_normal(a.shape), jnp.float32),
                          nn.meta.unbox(abstract["params"]))
    return dict(params=params, context=context, uncond=jnp.zeros_like(context), semantic=semantic, shape=shape,
                key=k[3])


def python_loop(s):
    """The sampler written by hand: its initial key, the per-step inputs and one jitted guided step."""
    init_key, step_key = jax.random.split(s["key"])
    steps = step_inputs(step_schedule(SAMPLER))
    table = jnp.asarray(denoiser_sigma_table(SAMPLER.denoiser_num_idx, SAMPLER.denoiser_shift_scale))
    context_pair = jnp.concatenate([s["uncond"], s["context"]])
    one_step = jax.jit(lambda carry, step: guided_step(CFG, s["params"], context_pair, s["semantic"], table,
                                                       step_key, carry, step))
    return init_key, steps, one_step


def test_scan_equals_python_loop(setup):
    s = setup
    samples, per_step = sample(s["params"], CFG, SAMPLER, s["context"], s["uncond"], s["semantic"], key=s["key"],
                               trajectory=True)
    init_key, steps, one_step = python_loop(s)
    x = initial_latent(s["shape"], key=init_key)
    carry = Carry(x, jnp.zeros_like(x))
    for i in range(SAMPLER.num_steps):
        carry, (x_in, x_out, _, _) = one_step(carry, jax.tree.map(lambda a: a[i], steps))
        np.testing.assert_allclose(per_step["step_x_out"][i], x_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(samples, carry.x, rtol=1e-5, atol=1e-5)
    # the last step returns the guided x0 prediction itself
    np.testing.assert_array_equal(samples, per_step["step_denoised"][-1])
    assert np.all(np.isfinite(np.asarray(samples)))


def test_injected_noise_picks_the_used_draws(setup):
    shape = setup["shape"]
    stream = np.arange(num_noise_draws(5), dtype=np.float32)[:, None, None, None, None, None] * np.ones(shape)
    used = np.asarray(injected_step_noise(stream, 5, shape))[:, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(used, [0, 2, 4, 6, 0])  # step0 standard, then the advanced draws, none last


def test_clean_prefix_is_reinjected_before_every_step_as_the_original(setup, compilations):
    """The original's VPSDEDPMPP2MSampler with fixed_frames=p, written here as a Python loop over
    one step: x_T takes the clean prefix; before every step the prefix frames of x are replaced by
    the clean prefix (not noised: sdedit is off), and once more after the last step."""
    s = setup
    shape, p = s["shape"], 1
    prefix = np.asarray(jax.random.normal(jax.random.key(9), (shape[0], p, *shape[2:])), np.float32)
    run = lambda **kw: sample(s["params"], CFG, SAMPLER, s["context"], s["uncond"], s["semantic"], key=s["key"],
                              trajectory=True, **kw)
    samples, per_step = run(prefix=prefix)

    init_key, steps, one_step = python_loop(s)
    x = np.array(initial_latent(shape, key=init_key))
    old_denoised = np.zeros(shape, np.float32)
    for i in range(SAMPLER.num_steps):
        x[:, :p] = prefix  # the rule: x = cat(prefix_frames, x[:, p:])
        carry, (x_in, _, _, _) = one_step(Carry(jnp.asarray(x), jnp.asarray(old_denoised)),
                                          jax.tree.map(lambda a: a[i], steps))
        np.testing.assert_allclose(per_step["step_x_in"][i], x_in, rtol=1e-5, atol=1e-5)  # what the network saw
        np.testing.assert_array_equal(np.asarray(x_in)[:, :p], prefix)
        x, old_denoised = np.array(carry.x), np.array(carry.old_denoised)
    x[:, :p] = prefix
    np.testing.assert_allclose(samples, x, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(samples)[:, :p], prefix)
    np.testing.assert_array_equal(np.asarray(per_step["step_x_in"])[:, :, :p], np.broadcast_to(
        prefix, (SAMPLER.num_steps, *prefix.shape)))
    # the prefix conditions the generated frames (through attention)
    plain = np.asarray(run()[0])
    assert not np.allclose(np.asarray(samples)[:, p:], plain[:, p:], atol=1e-3)

    # the count is data: a prefix of the same shape with 0 frames kept is the plain sampler, on
    # the compiled loop of the first call
    traces = compilations.traces
    none_kept = run(prefix=prefix, prefix_frames=jnp.int32(0))[0]
    assert compilations.traces == traces
    np.testing.assert_allclose(none_kept, plain, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="prefix"):
        run(prefix=np.zeros((1, 1, 2, 2, 2)))


def test_progress_runs_the_loop_in_blocks_and_changes_nothing(setup, persistent_cache):
    """With a callback the loop runs as host calls of blocks (every=2 of 4 steps: two blocks, one
    compiled function), reporting the compile and the steps after each block; the samples and
    the per-step outputs equal those of the one-call loop, and no compiled loop holds a host
    callback (so the persistent compilation cache keeps it)."""
    s = setup
    run = lambda **kw: sample(s["params"], CFG, SAMPLER, s["context"], s["uncond"], s["semantic"], key=s["key"], **kw)
    events = []
    with_progress, per_step = run(progress=events.append, progress_every=2, trajectory=True)
    assert [e.event for e in events] == ["compile", "compiled", "step", "step"]
    assert [(e.stage, e.step, e.total) for e in events[2:]] == [("diffusion sampler", 2, 4),
                                                                ("diffusion sampler", 4, 4)]
    plain, plain_per_step = run(trajectory=True)
    np.testing.assert_array_equal(with_progress, plain)
    for name, steps in plain_per_step.items():
        np.testing.assert_array_equal(per_step[name], steps)
    assert "jit_sample_block" in persistent_cache.seen and not persistent_cache.refused


def test_dynamic_cfg_reshuffles_with_the_step_count_and_exponent_0_is_constant():
    """The original's dynamic CFG takes step_index = steps − timestep, so its per-step scales are a
    different scatter in [1, 1 + scale] for every step count (what the README warns of); exponent 0
    gives 1 + scale at every step (the README's step-count-independent setting)."""
    scales = {n: step_schedule(SamplerConfig(num_steps=n, cfg_num_steps=n, cfg_scale=6.0, cfg_exp=5.0)).cfg_scale
              for n in (20, 40)}
    assert all(1.0 <= s.min() and s.max() <= 7.0 for s in scales.values())
    assert abs(scales[20].mean() - scales[40].mean()) > 0.3  # not one curve sampled at two rates
    for n in (20, 40):
        constant = step_schedule(SamplerConfig(num_steps=n, cfg_num_steps=n, cfg_scale=3.0, cfg_exp=0.0)).cfg_scale
        np.testing.assert_array_equal(constant, np.full(n, 4.0))
