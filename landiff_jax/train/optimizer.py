"""The optax chain of a run: clip by global norm, AdamW on a warm-up + decay schedule, and
gradient accumulation (optax.MultiSteps: an update every `accumulation_steps` calls, of the
mean gradient)."""

from __future__ import annotations

import optax

from landiff_jax.train.config import OptimizerConfig


def learning_rate_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """lr of update n: linear 0 → peak over warmup_steps, then cosine to final_lr_fraction × peak
    at total_steps (or constant)."""
    peak = cfg.learning_rate
    warmup = optax.linear_schedule(0.0, peak, max(cfg.warmup_steps, 1))
    if cfg.decay == "constant":
        after = optax.constant_schedule(peak)
    else:
        after = optax.cosine_decay_schedule(peak, max(total_steps - cfg.warmup_steps, 1), alpha=cfg.final_lr_fraction)
    if cfg.warmup_steps == 0:
        return after
    return optax.join_schedules([warmup, after], [cfg.warmup_steps])


def make_optimizer(cfg: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """The chain; wrapped in optax.MultiSteps only when accumulating (its gradient buffer is
    one more float32 copy of the trainable params)."""
    schedule = learning_rate_schedule(cfg, total_steps)
    chain = []
    if cfg.clip_global_norm is not None:
        chain.append(optax.clip_by_global_norm(cfg.clip_global_norm))
    chain.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    if cfg.accumulation_steps == 1:
        return optax.chain(*chain)
    return optax.MultiSteps(optax.chain(*chain), every_k_schedule=cfg.accumulation_steps)
