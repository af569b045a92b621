"""Plain and gated MLPs."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from landiff_jax.nn.dense import dense


def gelu_tanh(x):
    return nn.gelu(x, approximate=True)


def gelu_erf(x):
    return nn.gelu(x, approximate=False)


class Mlp(nn.Module):
    """fc2(act(fc1(x))). `hidden` → logical axis 'mlp'."""

    hidden: int
    out: int | None = None
    act: Callable = gelu_tanh
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        h = dense(self.hidden, ("embed", "mlp"), name="fc1", **kw)(x)
        return dense(self.out or x.shape[-1], ("mlp", "embed"), name="fc2", **kw)(self.act(h))


class GatedMlp(nn.Module):
    """down(act(gate(x)) · up(x)): LLaMA's w2(act(w1 x)·w3 x), T5's wo(act(wi_0 x)·wi_1 x)."""

    hidden: int
    act: Callable = gelu_tanh
    use_bias: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        gate = dense(self.hidden, ("embed", "mlp"), name="gate", **kw)(x)
        up = dense(self.hidden, ("embed", "mlp"), name="up", **kw)(x)
        return dense(x.shape[-1], ("mlp", "embed"), name="down", **kw)(self.act(gate) * up)
