"""Control DiT input checks (before any compute) and the position embedding layout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax.diffusion.config import DiTConfig
from landiff_jax.diffusion.dit import ControlDiT
from landiff_jax.diffusion.pos_embed import full_pos_embedding, sincos_1d

CFG = DiTConfig.tiny()


def _shapes(b=2, t=CFG.latent_frames, text=CFG.text_length, height=CFG.latent_height):
    s = jax.ShapeDtypeStruct
    x = s((b, t, height, CFG.latent_width, CFG.in_channels), jnp.float32)
    return x, s((b,), jnp.float32), s((b, text, CFG.text_hidden_size), jnp.float32), s((1, *x.shape[1:]), jnp.float32)


def _init(*args):
    return jax.eval_shape(lambda *a: ControlDiT(CFG).init(jax.random.key(0), *a), *args)


def test_accepts_fewer_frames():
    _init(*_shapes(t=1))


@pytest.mark.parametrize("bad, match", [
    (dict(text=CFG.text_length + 1), "context"),
    (dict(t=CFG.latent_frames + 1), "latent frames"),
    (dict(height=CFG.latent_height + 2), r"\(H, W, c\)"),
])
def test_bad_shapes_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        _init(*_shapes(**bad))


def test_pos_embedding_layout():
    """[temporal | spatial-w | spatial-h], each [sin | cos]; text rows zero; grid / 1.875."""
    table = full_pos_embedding(CFG)[0]
    h, w = CFG.grid
    d = CFG.hidden_size
    assert not table[: CFG.text_length].any()
    token = CFG.text_length + (1 * h + 2) * w + 3  # frame 1, row 2, column 3
    pos = lambda i: np.float32(i) / np.float32(1.875)
    expected = np.concatenate([sincos_1d(d // 4, np.array([1.0]))[0],
                               sincos_1d(3 * d // 8, np.array([pos(3)]))[0],
                               sincos_1d(3 * d // 8, np.array([pos(2)]))[0]])
    np.testing.assert_array_equal(table[token], expected)
