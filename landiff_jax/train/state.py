"""The training state: one pytree holding everything a step reads and a checkpoint saves."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []: train_step calls so far (micro-steps when accumulating)
    trainable: Any  # float32 params that get gradients
    frozen: Any  # params the loss reads but never updates (no gradient, no optimizer state)
    opt_state: Any  # optax state of the trainable params
    ema: Any  # EMA of the trainable params, or None (off)
    model_state: Any  # non-gradient state the loss updates (e.g. an EMA codebook); {} if none
    rng: jax.Array  # uint32 [2]: raw key; each step splits off the key of its draws

    def as_dict(self) -> dict:
        """Plain nested dict (what orbax saves); `ema` is left out when off."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        if out["ema"] is None:
            del out["ema"]
        return out

    @classmethod
    def from_dict(cls, tree: dict) -> TrainState:
        return cls(**{"ema": None, **tree})


def init_state(task, optimizer: optax.GradientTransformation, seed: int, ema: bool) -> TrainState:
    """A fresh state: params from task.init(key), optimizer state, EMA = params."""
    root = jax.random.PRNGKey(seed)
    init_key, rng = jax.random.split(root)
    trainable, frozen, model_state = task.init(init_key)
    return TrainState(
        step=jax.numpy.zeros((), jax.numpy.int32), trainable=trainable, frozen=frozen,
        opt_state=optimizer.init(trainable), ema=jax.tree.map(lambda x: x, trainable) if ema else None,
        model_state=model_state, rng=rng,
    )
