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


def test_scan_equals_python_loop(setup):
    s = setup
    samples, per_step = sample(CFG, SAMPLER, s["params"], s["context"], s["uncond"], s["semantic"], key=s["key"],
                               trajectory=True)
    init_key, step_key = jax.random.split(s["key"])
    steps = step_inputs(step_schedule(SAMPLER))
    table = jnp.asarray(denoiser_sigma_table(SAMPLER.denoiser_num_idx, SAMPLER.denoiser_shift_scale))
    context_pair = jnp.concatenate([s["uncond"], s["context"]])
    one_step = jax.jit(lambda carry, step: guided_step(CFG, s["params"], context_pair, s["semantic"], table,
                                                       step_key, carry, step))
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


def test_prefix_replaces_leading_frames(setup):
    shape = setup["shape"]
    prefix = np.full((shape[0], 1, *shape[2:]), 7.0, np.float32)
    x = np.asarray(initial_latent(shape, init_noise=np.zeros(shape, np.float32), prefix=prefix))
    assert np.all(x[:, :1] == 7.0) and np.all(x[:, 1:] == 0.0)
    with pytest.raises(ValueError, match="prefix"):
        initial_latent(shape, init_noise=np.zeros(shape, np.float32), prefix=np.zeros((1, 1, 2, 2, 2)))


def test_progress_reports_every_step_from_inside_the_scan_and_changes_nothing(setup):
    """A callback hears the compile and each of the steps (every=3 of 4: steps 3 and 4) from
    inside the compiled scan; the samples equal those without it."""
    s = setup
    run = lambda **kw: sample(CFG, SAMPLER, s["params"], s["context"], s["uncond"], s["semantic"], key=s["key"], **kw)
    events = []
    with_progress = run(progress=events.append, progress_every=3)
    assert [e.event for e in events] == ["compile", "compiled", "step", "step"]
    assert [(e.stage, e.step, e.total) for e in events[2:]] == [("diffusion sampler", 3, 4),
                                                                ("diffusion sampler", 4, 4)]
    np.testing.assert_array_equal(with_progress, run())
