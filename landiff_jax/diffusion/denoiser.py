"""DiscreteDenoiser with VideoScaling (v-prediction): x0 = net(x·c_in, c_noise)·c_out + x·c_skip.

sigma (a sqrt(ā) value) is first snapped to the nearest entry of the denoiser's 1000-table; the
network's noise input is the timestep itself (not quantised).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp


class Scalings(NamedTuple):
    sigma_quantized: jnp.ndarray  # [b]
    c_skip: jnp.ndarray
    c_out: jnp.ndarray
    c_in: jnp.ndarray
    c_noise: jnp.ndarray


def quantize_sigma(sigma, table):
    """Nearest table entry (first on ties, as torch's argmin): sigma [b] → [b] float32."""
    sigma = jnp.asarray(sigma, jnp.float32)
    table = jnp.asarray(table, jnp.float32)
    idx = jnp.argmin(jnp.abs(sigma[:, None] - table[None, :]), axis=-1)
    return table[idx]


def video_scalings(sigma, timestep, table) -> Scalings:
    """c_skip = σq, c_out = −sqrt(1 − σq²), c_in = 1, c_noise = timestep; all [b] float32."""
    sq = quantize_sigma(sigma, table)
    return Scalings(sq, sq, -jnp.sqrt(1.0 - sq * sq), jnp.ones_like(sq), jnp.asarray(timestep, jnp.float32))


def denoise(network: Callable, x, scalings: Scalings):
    """x0 prediction in float32. x: [b t h w c]; network(x_in, c_noise) → same shape."""
    expand = lambda c: c.reshape((-1,) + (1,) * (x.ndim - 1))
    out = network(x * expand(scalings.c_in).astype(x.dtype), scalings.c_noise)
    return out.astype(jnp.float32) * expand(scalings.c_out) + x.astype(jnp.float32) * expand(scalings.c_skip)
