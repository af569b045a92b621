"""The one jitted train step and the shardings it runs with.

Shardings come from the rules table (landiff_jax.parallel): params by their logical axes
(FSDP over `fsdp`, tensor parallel over `tensor`), the optimizer state and the EMA like the
params they follow, the batch split over (data, fsdp), scalars replicated. The state is donated.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from landiff_jax import parallel
from landiff_jax.config_file import ConfigError
from landiff_jax.train.state import TrainState, init_state
from landiff_jax.train.task import Task, with_logical_axes


def state_shardings(task: Task, optimizer: optax.GradientTransformation, mesh: Mesh, ema: bool) -> TrainState:
    """NamedShardings of every leaf of the TrainState (same pytree structure)."""
    trainable, frozen, model_state = task.abstract()
    plain = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nn.meta.unbox(trainable))
    opt_state = with_logical_axes(jax.eval_shape(optimizer.init, plain), trainable)
    scalar = NamedSharding(mesh, PartitionSpec())
    train_sh = parallel.param_shardings(trainable, mesh)
    return TrainState(
        step=scalar, trainable=train_sh, frozen=parallel.param_shardings(frozen, mesh),
        opt_state=parallel.param_shardings(opt_state, mesh), ema=train_sh if ema else None,
        model_state=parallel.param_shardings(model_state, mesh), rng=scalar,
    )


def abstract_state(task: Task, optimizer, seed: int, ema: bool, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs (with the target shardings) of the state: the restore target."""
    shapes = jax.eval_shape(lambda: init_state(task, optimizer, seed, ema))
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def create_state(task: Task, optimizer, seed: int, ema: bool, shardings: TrainState) -> TrainState:
    """A fresh state, built directly in its shardings (nothing full-size on one device)."""
    return jax.jit(lambda: init_state(task, optimizer, seed, ema), out_shardings=shardings)()


def start_from(task: Task, directory: str, state: TrainState) -> TrainState:
    """`state` with its params (and EMA) replaced by those of a converted checkpoint directory
    (task.load), placed in the state's shardings; the optimizer state of a fresh run fits any values."""
    if task.load is None:
        raise ConfigError(f"init_from: stage {task.name!r} starts from scratch only")
    trainable, frozen = task.load(directory)
    for name, tree, like in (("trainable", trainable, state.trainable), ("frozen", frozen, state.frozen)):
        if jax.tree.structure(tree) != jax.tree.structure(like):
            raise ConfigError(f"init_from {directory}: its {name} params do not match the stage's "
                              f"({len(jax.tree.leaves(tree))} vs {len(jax.tree.leaves(like))} arrays)")

    def place(tree, target):  # host arrays -> global arrays of the target's shapes, dtypes, shardings
        return jax.tree.map(lambda a, t: jax.make_array_from_callback(
            t.shape, t.sharding, lambda index: np.asarray(a, t.dtype)[index]), tree, target)

    ema = None if state.ema is None else place(trainable, state.ema)
    return state.replace(trainable=place(trainable, state.trainable), frozen=place(frozen, state.frozen), ema=ema)


def batch_shardings(task: Task, mesh: Mesh) -> dict:
    return {name: parallel.batch_sharding(mesh, len(spec.shape) + 1) for name, spec in task.example.items()}


def make_train_step(task: Task, optimizer: optax.GradientTransformation, schedule: optax.Schedule,
                    accumulation: int, ema_decay: float | None, shardings: TrainState, mesh: Mesh):
    """jit(train_step)(state, batch) -> (state, metrics): one micro-batch; the optimizer applies
    an update every accumulation_steps calls (then the EMA follows the new params).

    metrics: the loss's own parts, `loss`, `grad_norm` (of this micro-batch's gradient, before
    clipping) and `lr` (of the update this micro-batch contributes to), float32 scalars.
    """

    def train_step(state: TrainState, batch: dict):
        rng, key = jax.random.split(state.rng)
        grad_fn = jax.value_and_grad(task.loss, has_aux=True)
        (loss, (parts, model_state)), grads = grad_fn(state.trainable, state.frozen, state.model_state, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        ema = state.ema
        if ema is not None:
            updated = (state.step + 1) % accumulation == 0  # this micro-batch completed an update
            ema = jax.tree.map(lambda e, p: jnp.where(updated, ema_decay * e + (1 - ema_decay) * p, e), ema, trainable)
        metrics = {**parts, "loss": loss, "grad_norm": optax.tree.norm(grads),
                   "lr": schedule(state.step // accumulation)}
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        new = TrainState(step=state.step + 1, trainable=trainable, frozen=state.frozen, opt_state=opt_state,
                         ema=ema, model_state=model_state, rng=rng)
        return new, metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(train_step, in_shardings=(shardings, batch_shardings(task, mesh)),
                   out_shardings=(shardings, replicated), donate_argnums=0)
