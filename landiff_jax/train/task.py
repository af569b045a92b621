"""A training task: what the one trainer needs from a stage, and the registry `make_task`.

A stage's loss follows the contract `train_loss(cfg, trainable, frozen, model_state, batch, key)
-> (loss, (metrics, new_model_state))`; the Task holds it with cfg bound. Model packages are
imported lazily by their registry entry, so the trainer imports no model it does not train.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from landiff_jax.config_file import ConfigError
from landiff_jax.train.config import TrainConfig

LossFn = Callable[..., tuple[jax.Array, tuple[dict, Any]]]


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    loss: LossFn  # (trainable, frozen, model_state, batch, key) -> (loss, (metrics, model_state))
    init: Callable[[jax.Array], tuple[Any, Any, Any]]  # key -> (trainable, frozen, model_state)
    # () -> jax.eval_shape of init with nn.LogicallyPartitioned leaves where a logical axis is
    # known (plain leaves replicate): the input of parallel.param_shardings
    abstract: Callable[[], tuple[Any, Any, Any]]
    example: Mapping[str, jax.ShapeDtypeStruct]  # one example's fields (the batch adds axis 0)
    tokens_per_example: int = 1  # positions a forward processes per example (for tokens/s)
    flops_per_example: float | None = None  # training FLOPs (forward + backward) per example, for MFU


def with_logical_axes(tree, boxed_reference):
    """Box the leaves of `tree` (abstract arrays) with the logical names of the leaf of
    `boxed_reference` whose key path is a suffix of theirs and whose shape is equal (e.g. a
    stage's trainable split of the model's params); other leaves stay plain (replicated)."""
    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)  # noqa: E731
    names = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(boxed_reference, is_leaf=is_box):
        if is_box(leaf):
            names[_keys(path)] = (leaf.names, leaf.value.shape)

    def box(path, leaf):
        keys = _keys(path)
        for start in range(len(keys)):
            found = names.get(keys[start:])
            if found is not None and tuple(found[1]) == tuple(leaf.shape):
                return nn.LogicallyPartitioned(leaf, found[0])
        return leaf

    return jax.tree_util.tree_map_with_path(box, tree)


def _keys(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path)


def apply_policy(model_cfg, config: TrainConfig):
    """The stage's config with the run's dtype policy (float32 params, compute_dtype forward)
    and remat, for the fields the stage's config has."""
    fields = {f.name for f in dataclasses.fields(model_cfg)}
    changes = {}
    if "param_dtype" in fields:
        changes["param_dtype"] = jnp.float32
    if "dtype" in fields:
        changes["dtype"] = jnp.dtype(config.compute_dtype).type
    if "train_attention" in fields:  # the LM's causal training attention, for these devices
        from landiff_jax import runtime

        changes["train_attention"] = runtime.choose(config.compute_dtype, model_cfg.head_dim).attention
    if "remat" in fields:
        changes["remat"] = config.remat
    elif config.remat != "none":
        raise ConfigError(f"remat={config.remat!r}: {type(model_cfg).__name__} has no remat field")
    return dataclasses.replace(model_cfg, **changes)


def _lm_task(config: TrainConfig) -> Task:
    from landiff_jax.lm import layout, losses, model

    cfg = apply_policy(config.model, config)
    init = functools.partial(losses.init_train_state, cfg)
    n_codes = layout.num_codes(config.data.frames, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length)
    text_len = config.data.text_len
    example = {
        "text_embedding": jax.ShapeDtypeStruct((text_len, cfg.text_dim), jnp.float32),
        "text_mask": jax.ShapeDtypeStruct((text_len,), jnp.bool_),
        "codes": jax.ShapeDtypeStruct((n_codes,), jnp.int32),
        "frames": jax.ShapeDtypeStruct((), jnp.int32),
        "motion_score": jax.ShapeDtypeStruct((), jnp.float32),
    }
    kinds = layout.video_kinds(config.data.frames, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length)
    seq = 1 + len(cfg.micro_keys) + text_len + len(kinds)  # BOS, micro, text rows, SOI … EOS
    return Task(
        name="lm",
        loss=functools.partial(losses.train_loss, cfg),
        init=init,
        abstract=lambda: with_logical_axes(jax.eval_shape(init, jax.random.PRNGKey(0)), model.abstract_params(cfg)),
        example=example,
        tokens_per_example=seq,
        flops_per_example=lm_flops_per_sequence(cfg, seq),
    )


def lm_flops_per_sequence(cfg, seq: int) -> float:
    """Training FLOPs of one sequence of `seq` positions: 6·N·S for the N weights every position
    multiplies (blocks + head; the conditioning MLPs touch a few rows and are left out) plus the
    causal attention 6·L·S²·d (QKᵀ and AV, 2 FLOPs per MAC, ×3 for the backward, half the square)."""
    d, layers = cfg.hidden, cfg.num_layers
    per_layer = 4 * d * d + 3 * d * cfg.mlp_dim  # wqkv + wo, gate/up/down
    n = layers * per_layer + d * cfg.vocab_size
    return 6.0 * n * seq + 6.0 * layers * seq * seq * d


TASKS: dict[str, Callable[[TrainConfig], Task]] = {"lm": _lm_task}


def make_task(config: TrainConfig) -> Task:
    if config.stage not in TASKS:
        raise ConfigError(f"stage {config.stage!r} is not a training task (known: {', '.join(sorted(TASKS))})")
    return TASKS[config.stage](config)


def check_batch(task: Task, batch: Mapping[str, np.ndarray], rows: int, source: str = "data") -> None:
    """One-line error when a (per-process) batch does not hold the task's fields and shapes."""
    missing = sorted(set(task.example) - set(batch))
    if missing:
        raise ConfigError(f"{source}: batch lacks field(s) {', '.join(missing)} needed by task {task.name!r}")
    for name, spec in task.example.items():
        got = np.shape(batch[name])
        if got != (rows, *spec.shape):
            raise ConfigError(f"{source}: field {name!r} has shape {got}, expected {(rows, *spec.shape)}")
