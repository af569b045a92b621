"""Diffusion training loss: parity with the original's training forward/backward, frozen params,
rematerialisation, the zero-init start, the fixed_frames prefix, base-DiT mode, and a tiny
control branch that learns."""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from landiff_jax.diffusion.config import DiffusionTrainConfig, DiTConfig, SemanticCondConfig
from landiff_jax.diffusion.losses import diffusion_loss, init_train_state, sample_draws, train_loss
from landiff_jax.parity import diffusion_train as train_parity

DIT = DiTConfig.tiny(
    hidden_size=32, num_heads=2, num_layers=3, control_layers=2, time_embed_dim=16, text_length=4,
    text_hidden_size=8, latent_frames=3, latent_height=8, latent_width=8,
    semantic=SemanticCondConfig(z_channels=16, ch=32, ch_mult=(1.0, 1.0), num_res_blocks=0, out_dim=8, target_dim=4),
)
CFG = DiffusionTrainConfig(dit=DIT, semantic_source="features")


# numpy draws for the inputs: each jax.random draw of a new shape compiles (the batch cost ~12 s
# of CPU that way, the perturbation of every parameter ~37 s)
def _batch(seed, b=2, t=3):
    rng, c = np.random.default_rng(seed), DIT
    features = rng.standard_normal((b, t, c.latent_height // 2, c.latent_width // 2, c.semantic.z_channels))
    # latents that depend on the semantic features, so the control branch has something to learn
    latent = np.repeat(np.repeat(features[..., : c.in_channels], 2, axis=2), 2, axis=3)
    latent = latent + 0.1 * rng.standard_normal(latent.shape)
    batch = {"latent": latent, "features": features,
             "text_embedding": rng.standard_normal((b, c.text_length, c.text_hidden_size))}
    return {k: jnp.asarray(v, jnp.float32) for k, v in batch.items()}


def _perturbed(trainable, seed, scale=0.05):
    """Trainable params moved off the zero init (so every control parameter gets a gradient)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(np.asarray(p) + scale * rng.standard_normal(p.shape), p.dtype),
                        trainable)


@pytest.fixture(scope="module")
def state():
    trainable, frozen, model_state = init_train_state(CFG, jax.random.key(0))
    return trainable, frozen, model_state, _batch(1)


def _value_and_grad(cfg):
    """jit of (loss, (metrics, state)), d loss / d (trainable, frozen) — one compile per config."""
    return jax.jit(jax.value_and_grad(functools.partial(train_loss, cfg), argnums=(0, 1), has_aux=True))


@pytest.fixture(scope="module")
def control_step():
    return _value_and_grad(CFG)


# --- parity with the original ---------------------------------------------------------------

@pytest.mark.parametrize("case", [
    pytest.param("a_t3_textdrop", marks=pytest.mark.slow),  # the same compile as the next (~40 s CPU)
    "b_t3_fixed1",
])
def test_parity(fixtures_dir, case, torch):
    case_dir = fixtures_dir / "diffusion_train" / case
    checks = train_parity.run(case_dir, json.loads((case_dir / "meta.json").read_text()))
    failed = [f"{c.name}: err {c.max_abs_err:.3g} ratio {c.ratio:.3g} {c.detail}" for c in checks if not c.passed]
    assert checks and not failed, failed
    names = {c.name for c in checks}
    assert {"loss", "per_sample_loss", "control_outputs", "frozen_params_grad", "trainable_set"} <= names
    assert sum(n.startswith("grad ") for n in names) == 88  # 90 requires_grad tensors, 2 with grad None


# --- frozen params and rematerialisation ----------------------------------------------------

@pytest.fixture(scope="module")
def perturbed(state):
    return _perturbed(state[0], 2)


def _control_grads(step, state, trainable):
    _, frozen, model_state, batch = state
    _, grads = step(trainable, frozen, model_state, batch, jax.random.key(3))
    return grads


@pytest.mark.slow  # CI time: the parity case checks that frozen params get no gradient
def test_frozen_params_get_no_gradient(control_step, state, perturbed):
    g_trainable, g_frozen = _control_grads(control_step, state, perturbed)
    assert set(g_frozen) == {"dit"} and set(g_frozen["dit"]) == {"main"}
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(g_frozen))
    assert set(g_trainable) == {"dit", "semantic"} and set(g_trainable["dit"]) == {"control"}


@pytest.mark.parametrize("change", [dict(remat="full", scan_unroll=2),  # one compile each: the others are slow
                                    pytest.param(dict(remat="full"), marks=pytest.mark.slow),
                                    pytest.param(dict(remat="dots"), marks=pytest.mark.slow)])
def test_remat_gives_the_same_control_gradients(control_step, state, perturbed, change):
    """The original's activation checkpointing of the frozen main DiT blocked every control
    gradient; ours must reach the control branch through the frozen main stack, unchanged. The
    stacks' loop unrolled (2 layers per iteration: 3 main layers do not divide) changes nothing either."""
    g_ref = _control_grads(control_step, state, perturbed)[0]
    cfg = dataclasses.replace(CFG, dit=dataclasses.replace(DIT, **change))
    g, g_frozen = _control_grads(_value_and_grad(cfg), state, perturbed)
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(g_frozen))
    control = g["dit"]["control"]
    for path in (("layers", "attention", "qkv", "kernel"), ("layers", "mlp", "fc1", "kernel"),
                 ("layers", "zero_linear", "kernel")):
        leaf = functools.reduce(lambda d, k: d[k], path, control)
        assert all(float(jnp.max(jnp.abs(leaf[i]))) > 0 for i in range(DIT.control_layers)), path
    for name in ("patch_embed", "text_proj", "time_embed"):
        assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(control[name])) > 0, name
    assert float(jnp.max(jnp.abs(g["semantic"]["upsample_model"]["conv_in"]["kernel"]))) > 0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g, g_ref)


# --- zero-init start, base-DiT mode ----------------------------------------------------------

def test_zero_init_control_equals_base_model(control_step, state):
    """Step 0 of the controlled model (a copy of the main DiT with zero output linears and a zero
    semantic conv_out) gives the base DiT's loss, with the same draws."""
    trainable, frozen, model_state, batch = state
    control = trainable["dit"]["control"]
    assert not any(jnp.any(x) for x in jax.tree.leaves(control["layers"]["zero_linear"]))
    assert not any(jnp.any(x) for x in jax.tree.leaves(trainable["semantic"]["conv_out"]))
    np.testing.assert_array_equal(control["layers"]["mlp"]["fc1"]["kernel"],
                                  frozen["dit"]["main"]["layers"]["mlp"]["fc1"]["kernel"][: DIT.control_layers])
    base_cfg = dataclasses.replace(CFG, mode="base")
    base_trainable = {"dit": {"main": frozen["dit"]["main"]}}
    losses = []
    base_loss = jax.jit(functools.partial(train_loss, base_cfg))  # one compile for both keys
    for key in jax.random.split(jax.random.key(4), 2):
        (loss_control, (metrics, new_state)), _ = control_step(trainable, frozen, model_state, batch, key)
        loss_base, _ = base_loss(base_trainable, {}, {}, batch, key)
        np.testing.assert_allclose(loss_control, loss_base, rtol=1e-6)
        losses.append(float(loss_control))
    assert losses[0] != losses[1]  # the key changes the draws
    assert set(metrics) == {"diffusion_loss", "text_dropped", "mean_timestep"} and new_state == model_state


@pytest.mark.slow  # a compile of its own (~25 s CPU)
def test_base_mode_trains_the_whole_dit(state):
    base_cfg = dataclasses.replace(CFG, mode="base")
    trainable, frozen, _ = init_train_state(base_cfg, jax.random.key(5))
    assert set(trainable) == {"dit"} and set(trainable["dit"]) == {"main"} and frozen == {}
    _, _, model_state, batch = state
    _, (g, g_frozen) = _value_and_grad(base_cfg)(trainable, {}, model_state, batch, jax.random.key(6))
    assert g_frozen == {}
    leaves = jax.tree_util.tree_leaves_with_path(g["dit"]["main"])
    names = [jax.tree_util.keystr(p) for p, x in leaves if not jnp.any(x)]
    assert all("key_norm']['bias" in n for n in names), names  # all learn but the softmax-invariant bias


# --- draws and the fixed_frames prefix --------------------------------------------------------

def test_draws_follow_the_config(state):
    *_, batch = state
    cfg = dataclasses.replace(CFG, text_drop_prob=0.5)
    draws = sample_draws(cfg, {"latent": jnp.zeros((4000, 1, 1, 1, 1))}, jax.random.key(7))
    assert 0.45 < float(jnp.mean(draws.text_keep)) < 0.55
    assert int(draws.timestep_idx.min()) >= 0 and int(draws.timestep_idx.max()) == cfg.num_timesteps - 1
    assert draws.noise.shape == (4000, 1, 1, 1, 1)


def test_fixed_frames_prefix_is_clean_and_excluded(state):
    trainable, frozen, model_state, batch = state
    cfg = dataclasses.replace(CFG, fixed_frames=1)
    draws = sample_draws(cfg, batch, jax.random.key(8))
    draws = draws._replace(text_keep=jnp.array([True, False]), timestep_idx=jnp.array([5, 700]))
    loss, aux = jax.jit(functools.partial(diffusion_loss, cfg, collect=True))(trainable, frozen, batch, draws)
    x0, noised, pred = batch["latent"], aux["noised_input"], aux["denoiser_output"]
    np.testing.assert_array_equal(noised[:, :1], x0[:, :1])
    assert jnp.all(jnp.any(noised[:, 1:] != x0[:, 1:], axis=(1, 2, 3, 4)))
    assert not jnp.any(aux["crossattn"][1]) and jnp.array_equal(aux["crossattn"][0], batch["text_embedding"][0])
    a = aux["alphas_cumprod_sqrt"]
    w = 1.0 / (1.0 - np.asarray(a, np.float64) ** 2)
    err = (np.asarray(pred, np.float64) - np.asarray(x0, np.float64)) ** 2
    expected = w * err[:, 1:].mean(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(aux["per_sample_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(loss, expected.mean(), rtol=1e-5)
    assert not np.allclose(expected, w * err.mean(axis=(1, 2, 3, 4)), rtol=1e-3)  # the prefix would count


def test_bad_batch_is_named(state):
    trainable, frozen, model_state, batch = state
    with pytest.raises(ValueError, match=r"batch\['features'\]"):
        train_loss(CFG, trainable, frozen, model_state, {**batch, "features": batch["features"][:, :2]},
                   jax.random.key(0))
    with pytest.raises(ValueError, match="fixed_frames"):
        dataclasses.replace(CFG, fixed_frames=DIT.latent_frames)


# --- a tiny control branch learns -----------------------------------------------------------

def test_tiny_control_training_lowers_the_loss(control_step, state):
    """Inline optax loop on one synthetic batch; the loss is measured with the same draws before
    and after (the compiled step's loss value)."""
    trainable, frozen, model_state, batch = state
    optimizer = optax.adam(3e-3)
    update = jax.jit(lambda g, o, p: optimizer.update(g, o, p))
    eval_keys = jax.random.split(jax.random.key(9), 4)

    def eval_loss(tr):
        return np.mean([float(control_step(tr, frozen, model_state, batch, k)[0][0]) for k in eval_keys])

    before = eval_loss(trainable)
    opt_state = optimizer.init(trainable)
    for key in jax.random.split(jax.random.key(10), 40):
        _, (grads, _) = control_step(trainable, frozen, model_state, batch, key)
        updates, opt_state = update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
    after = eval_loss(trainable)
    assert after < 0.8 * before, (before, after)
