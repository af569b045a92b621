import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.losses import VAELossConfig, init_train_state, latent_shape, train_loss, vae_loss

CFG = VAELossConfig(VAEConfig.tiny(ch=32, ch_mult=(1, 2), num_res_blocks=1, temporal_compress_times=2,
                                   z_channels=4), kl_weight=1e-3)


def _video(seed=0):
    # a flat background with a bright square moving right: [1 5 16 16 3] in [-1, 1]
    v = np.full((1, 5, 16, 16, 3), -0.5, np.float32)
    for t in range(5):
        v[0, t, 4:10, 2 + 2 * t:8 + 2 * t] = [0.9, -0.9, 0.2]
    return jnp.asarray(v)


def test_kl_term_matches_closed_form():
    params, _, _ = jax.jit(init_train_state, static_argnums=0)(CFG, jax.random.key(0))  # as the trainer does
    video = _video()
    noise = jnp.zeros(latent_shape(CFG.vae, video.shape))
    from landiff_jax.vae.api import split_moments
    from landiff_jax.vae.model import Encoder
    moments = jax.jit(lambda p, v: Encoder(CFG.vae).apply({"params": p}, v))(params["encoder"], video)
    mean, logvar = split_moments(CFG.vae, moments)
    m, lv = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    expected = np.mean(0.5 * (m**2 + np.exp(lv) - 1 - lv))
    _, metrics = jax.jit(vae_loss, static_argnums=0)(CFG, params, video, noise)
    np.testing.assert_allclose(float(metrics["kl"]), expected, rtol=1e-5)


@pytest.mark.slow  # CI time (3D conv compiles); the KL test keeps the loss in CI
def test_tiny_vae_learns_to_reconstruct():
    params, frozen, state = init_train_state(CFG, jax.random.key(1))
    opt = optax.adam(2e-3)
    opt_state = opt.init(params)
    batch = {"video": _video()}

    @jax.jit
    def step(params, opt_state, key):
        (loss, (metrics, _)), grads = jax.value_and_grad(
            lambda p: train_loss(CFG, p, frozen, state, batch, key), has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, metrics["rec_l1"]

    first = None
    for i in range(25):
        params, opt_state, rec = step(params, opt_state, jax.random.key(i))
        first = float(rec) if first is None else first
    assert float(rec) < 0.7 * first, (first, float(rec))
