"""The one random-weight initialiser: any params tree of known shapes (an `abstract_params`)
filled with random weights (tests, benchmarks, the random-weight demo)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util


def random_params(abstract, seed: int = 0, std: float = 0.02):
    """Random weights of the given shapes: norm scales 1, biases 0, the rest N(0, std²). Small
    trees are drawn with numpy (XLA's CPU compile of many RNG ops takes longer than the draw);
    large ones in one compiled call on the default device, never materialised on the host."""
    flat = traverse_util.flatten_dict(nn.meta.unbox(abstract), sep="/")
    on_device = sum(int(np.prod(v.shape)) for v in flat.values()) > 50_000_000
    xp = jnp if on_device else np

    def fill(key, index: int, path: str, leaf):
        name = path.rsplit("/", 1)[-1]
        if name in ("scale", "bias"):
            return (xp.ones if name == "scale" else xp.zeros)(leaf.shape, leaf.dtype)
        if on_device:
            noise = jax.random.normal(jax.random.fold_in(key, index), leaf.shape, jnp.float32)
        else:
            noise = key.standard_normal(leaf.shape, np.float32)
        return (noise * std).astype(leaf.dtype)

    build = lambda key: {k: fill(key, i, k, v) for i, (k, v) in enumerate(flat.items())}
    tree = jax.jit(build)(jax.random.key(seed)) if on_device else build(np.random.default_rng(seed))
    return traverse_util.unflatten_dict(tree, sep="/")
