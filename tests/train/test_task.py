"""Task helpers: logical axes carried over to a stage's param split, the LM FLOPs formula's
weight count against the real params, the dtype/remat policy, and the experiment files."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from landiff_jax import config_file
from landiff_jax.config_file import ConfigError
from landiff_jax.lm import model
from landiff_jax.lm.config import LMConfig
from landiff_jax.train.config import TrainConfig
from landiff_jax.train.task import apply_policy, lm_flops_per_sequence, with_logical_axes

REPO = Path(__file__).resolve().parents[2]


def test_with_logical_axes_follows_key_paths():
    boxed = model.abstract_params(LMConfig.tiny())
    plain = nn.meta.unbox(boxed)
    # a stage's split: the model's params under another root, plus a new leaf of its own
    tree = {"lm": plain, "extra_null": jax.ShapeDtypeStruct((64,), jnp.float32)}
    out = with_logical_axes(tree, boxed)
    assert out["lm"]["layers"]["wqkv"]["kernel"].names == ("layers", "embed", None, "heads", "kv")
    assert out["lm"]["token_embed"]["embedding"].names == ("vocab", "embed")
    assert not isinstance(out["extra_null"], nn.LogicallyPartitioned)


def test_lm_flops_count_the_block_and_head_weights():
    cfg = LMConfig.tiny()
    params = nn.meta.unbox(model.abstract_params(cfg))
    kernels = [x for path, x in jax.tree_util.tree_leaves_with_path(params["layers"])
               if "kernel" in jax.tree_util.keystr(path)]
    n = sum(math.prod(x.shape) for x in kernels) + math.prod(params["head"]["kernel"].shape)
    seq = 100
    attention = 6 * cfg.num_layers * seq * seq * cfg.hidden
    assert lm_flops_per_sequence(cfg, seq) == pytest.approx(6 * n * seq + attention)


@dataclasses.dataclass(frozen=True)
class NoRematConfig:
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32


def test_policy_sets_compute_dtype_and_keeps_float32_params():
    run = TrainConfig(stage="lm", model=LMConfig.tiny(), compute_dtype="bfloat16")
    cfg = apply_policy(run.model, run)
    assert cfg.dtype == jnp.bfloat16 and cfg.param_dtype == jnp.float32
    other = apply_policy(NoRematConfig(param_dtype=jnp.bfloat16), run)
    assert other == NoRematConfig(dtype=jnp.bfloat16, param_dtype=jnp.float32)
    with pytest.raises(ConfigError, match="no remat field"):
        apply_policy(NoRematConfig(), run.replace(remat="full"))


def test_lm_tiny_config_loads():
    config = config_file.load(REPO / "configs" / "lm_tiny.py", ["steps=7", "optimizer.learning_rate=3e-4"])
    assert isinstance(config, TrainConfig) and config.stage == "lm"
    assert config.steps == 7 and config.optimizer.learning_rate == 3e-4 and config.model == LMConfig.tiny()
