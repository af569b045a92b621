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
    # directory -> (trainable, frozen) from a converted checkpoint (TrainConfig.init_from); None:
    # the stage starts from scratch only
    load: Callable[[str], tuple[Any, Any]] | None = None


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
    if "attention" in fields:  # a kernel with a backward pass (cuDNN for bf16 on GPU, else XLA)
        from landiff_jax import runtime

        changes["attention"] = runtime.choose(config.compute_dtype, model_cfg.head_dim).attention
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


def _tokenizer_task(config: TrainConfig) -> Task:
    from landiff_jax.tokenizer import abstract_params, losses, masks

    cfg = dataclasses.replace(config.model, model=apply_policy(config.model.model, config))
    m, t = cfg.model, config.data.frames
    init = functools.partial(losses.init_train_state, cfg)
    seq = m.seq_len(t)  # the encoder's patches + latent tokens; the decoder's as many
    attended = (masks.encoder_frames(m, t).pairs() + masks.decoder_frames(m, t).pairs()) / (2 * seq * seq)
    return Task(
        name="tokenizer",
        loss=functools.partial(losses.train_loss, cfg),
        init=init,
        abstract=lambda: with_logical_axes(jax.eval_shape(init, jax.random.PRNGKey(0)), abstract_params(m)),
        example={"features": jax.ShapeDtypeStruct((t, *m.image_size, m.image_channels), jnp.float32)},
        tokens_per_example=seq,
        flops_per_example=transformer_flops(2 * m.num_layers * _block_weights(m.width, 4 * m.width), seq,
                                            2 * m.num_layers, m.width, attended),
    )


def _diffusion_task(config: TrainConfig) -> Task:
    """The control branch (mode 'control') or the base DiT (mode 'base'). Examples hold the VAE
    posterior unscaled (latent_mean, latent_std); every step samples its latent
    scale_factor·(mean + std·ε) from the step's key before the loss makes its own draws."""
    from landiff_jax.diffusion import losses
    from landiff_jax.diffusion.dit import ControlDiT

    model = config.model
    no_remat = config.replace(remat="none")
    cfg = dataclasses.replace(model, dit=apply_policy(model.dit, config),
                              tokenizer=model.tokenizer and apply_policy(model.tokenizer, no_remat))
    c, t = cfg.dit, config.data.frames
    latent = jax.ShapeDtypeStruct((t, c.latent_height, c.latent_width, c.in_channels), jnp.float32)
    example = {"latent_mean": latent, "latent_std": latent,
               "text_embedding": jax.ShapeDtypeStruct((c.text_length, c.text_hidden_size), jnp.float32)}
    if cfg.mode == "control" and cfg.semantic_source == "codes":
        example["codes"] = jax.ShapeDtypeStruct((cfg.tokenizer.num_codes(t),), jnp.int32)
    elif cfg.mode == "control":
        example["features"] = jax.ShapeDtypeStruct(
            (t, c.latent_height // 2, c.latent_width // 2, c.semantic.z_channels), jnp.float32)
    init = functools.partial(losses.init_train_state, cfg)

    def reference():  # the DiT's params with their logical axes (the small rest is replicated)
        x = jax.ShapeDtypeStruct((1, 1, c.latent_height, c.latent_width, c.in_channels), jnp.float32)
        context = jax.ShapeDtypeStruct((1, c.text_length, c.text_hidden_size), jnp.float32)
        feature = (x,) if cfg.mode == "control" else ()
        steps = jax.ShapeDtypeStruct((1,), jnp.float32)
        init_dit = ControlDiT(cfg.model).init
        return {"dit": jax.eval_shape(init_dit, jax.random.PRNGKey(0), x, steps, context, *feature)["params"]}

    seq = c.num_video_tokens(t) + c.text_length
    weights = _block_weights(c.hidden_size, c.mlp_ratio * c.hidden_size)
    if cfg.mode == "base":  # the whole DiT trains: forward + both backward halves
        flops = transformer_flops(c.num_layers * weights, seq, c.num_layers, c.hidden_size)
    else:  # the frozen main stack runs forward and passes gradients back
        flops = (transformer_flops(c.control_layers * weights, seq, c.control_layers, c.hidden_size)
                 + transformer_flops(c.num_layers * weights, seq, c.num_layers, c.hidden_size, weight_gradients=False))
    return Task(
        name="diffusion",
        loss=functools.partial(diffusion_posterior_loss, cfg, losses.train_loss),
        init=init,
        abstract=lambda: with_logical_axes(jax.eval_shape(init, jax.random.PRNGKey(0)), reference()),
        example=example,
        tokens_per_example=seq,
        flops_per_example=flops,
        load=functools.partial(_load_diffusion, cfg, init),
    )


def diffusion_posterior_loss(cfg, loss_fn, trainable, frozen, model_state, batch, key):
    """`loss_fn` (the diffusion stage loss) on a latent sampled from the batch's unscaled
    posterior: latent = scale_factor·(latent_mean + latent_std·ε), ε from the first half of `key`."""
    k_latent, k_loss = jax.random.split(key)
    mean = batch["latent_mean"].astype(jnp.float32)
    noise = jax.random.normal(k_latent, mean.shape, jnp.float32)
    latent = cfg.scale_factor * (mean + batch["latent_std"].astype(jnp.float32) * noise)
    rest = {k: v for k, v in batch.items() if k not in ("latent_mean", "latent_std")}
    return loss_fn(cfg, trainable, frozen, model_state, {**rest, "latent": latent}, k_loss)


def _load_diffusion(cfg, init, directory: str):
    """(trainable, frozen) of the diffusion component of a converted checkpoint, split for
    cfg.mode; parameters the stage does not read (the tokenizer copy's encoder) are left out."""
    from landiff_jax import checkpoint
    from landiff_jax.diffusion import losses

    params = checkpoint.load_component(directory, "diffusion")
    trainable, frozen, _ = jax.eval_shape(init, jax.random.PRNGKey(0))
    want = losses.merge_params(trainable, frozen)
    return losses.split_params(select_like(params, want, f"{directory} diffusion"), cfg.mode)


def select_like(tree, like, where: str):
    """The subtree of `tree` (nested dicts) with the keys and leaf shapes of `like`; a one-line
    ConfigError naming the first missing or misshaped parameter."""
    if not isinstance(like, Mapping):
        if tuple(np.shape(tree)) != tuple(like.shape):
            raise ConfigError(f"{where}: shape {tuple(np.shape(tree))}, the stage's config expects {tuple(like.shape)}")
        return np.asarray(tree, np.float32)
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{where}: a parameter where the stage expects a group {sorted(like)}")
    missing = sorted(set(like) - set(tree))
    if missing:
        raise ConfigError(f"{where}: lacks {missing[0]!r} (the stage's config expects {sorted(like)})")
    return {k: select_like(tree[k], v, f"{where}/{k}") for k, v in like.items()}


def _vae_task(config: TrainConfig) -> Task:
    """The 3D causal VAE: examples are uint8 clips [F H W 3], F = the video frames of
    data.frames latent frames, of data.video_size; the loss sees them in [-1, 1]."""
    from landiff_jax.vae import abstract_params, losses

    vae_cfg = apply_policy(config.model.vae, config)
    if config.compute_dtype != "float32":
        vae_cfg = dataclasses.replace(vae_cfg, precision="default")
    cfg = dataclasses.replace(config.model, vae=vae_cfg)
    frames = vae_cfg.video_frames(config.data.frames)
    height, width = config.data.video_size
    if height % vae_cfg.spatial_factor or width % vae_cfg.spatial_factor:
        raise ConfigError(f"data.video_size {config.data.video_size} is not a multiple of the VAE's "
                          f"spatial factor {vae_cfg.spatial_factor}")
    init = functools.partial(losses.init_train_state, cfg)
    return Task(
        name="vae",
        loss=functools.partial(_vae_loss, cfg, losses.train_loss),
        init=init,
        abstract=lambda: with_logical_axes(jax.eval_shape(init, jax.random.PRNGKey(0)), abstract_params(vae_cfg)),
        example={"video": jax.ShapeDtypeStruct((frames, height, width, 3), jnp.uint8)},
        tokens_per_example=frames,  # tokens/s counts video frames
    )


def _vae_loss(cfg, loss_fn, trainable, frozen, model_state, batch, key):
    from landiff_jax.vae import from_unit, uint8_to_unit

    return loss_fn(cfg, trainable, frozen, model_state, {"video": from_unit(uint8_to_unit(batch["video"]))}, key)


def _block_weights(width: int, mlp_dim: int) -> int:
    """Weights of a transformer block every position multiplies: QKV + output, two-matrix MLP."""
    return 4 * width * width + 2 * width * mlp_dim


def transformer_flops(weights: int, seq: int, layers: int, width: int, attended: float = 1.0,
                      weight_gradients: bool = True) -> float:
    """Training FLOPs (forward + backward) of `seq` positions through `weights` block weights:
    6·N·S plus attention 12·L·S²·d (QKᵀ and AV, 2 FLOPs per MAC, ×3) times `attended`, the
    fraction of (query, key) pairs the mask lets attend (work a mask rules out is not counted). A
    frozen stack that passes gradients back (weight_gradients False) skips the weights' own
    gradients, 4·N·S, but not any of attention's: it has no weights, and both its inputs need
    theirs."""
    attention = 12.0 * layers * seq * seq * width * attended
    return (6.0 if weight_gradients else 4.0) * weights * seq + attention


TASKS: dict[str, Callable[[TrainConfig], Task]] = {
    "lm": _lm_task, "tokenizer": _tokenizer_task, "diffusion": _diffusion_task, "vae": _vae_task,
}


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
