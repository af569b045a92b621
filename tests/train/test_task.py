"""Task helpers: logical axes carried over to a stage's param split, the LM FLOPs formula's
weight count against the real params, the transformer FLOPs formula against XLA's own count, the
dtype/remat policy, and the experiment files."""

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
from landiff_jax.train.task import (
    _block_weights,
    apply_policy,
    lm_flops_per_sequence,
    make_task,
    transformer_flops,
    with_logical_axes,
)

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


def test_tokenizer_flops_count_only_the_pairs_its_masks_let_attend():
    """The attention term is the dense masks' share of the S² pairs (encoder and decoder alike)."""
    from landiff_jax.tokenizer import decoder_mask, encoder_mask

    config = config_file.load(REPO / "configs" / "tokenizer_tiny.py")
    m, t = config.model.model, config.data.frames
    seq, width, layers = m.seq_len(t), m.width, 2 * m.num_layers
    attended = float((jnp.mean(encoder_mask(m, t)) + jnp.mean(decoder_mask(m, t))) / 2)
    assert 0.3 < attended < 0.9
    full = transformer_flops(layers * _block_weights(width, 4 * width), seq, layers, width)
    assert make_task(config).flops_per_example == pytest.approx(full - (1 - attended) * 12 * layers * seq**2 * width)


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


@pytest.mark.parametrize("weight_gradients", [False, True])
def test_transformer_flops_match_what_xla_counts(weight_gradients):
    """One attention + MLP block over 512 positions, differentiated for its input only (a frozen
    stack passing gradients back) or also for its weights: XLA's FLOP count of the compiled
    gradient is the formula's within 6 % (the rest: softmax and other elementwise work that the
    formula leaves out, and simplifications XLA makes). Counting the frozen stack as 2/3 of a
    trained one would be 22 % under."""
    seq, width, mlp = 512, 64, 256
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    x, cotangent = (jax.random.normal(k, (seq, width)) for k in keys[:2])
    weights = {name: jax.random.normal(k, shape) for name, k, shape in zip(
        ("qkv", "out", "up", "down"), keys[2:], ((width, 3 * width), (width, width), (width, mlp), (mlp, width)))}

    def loss(w, x):
        q, k, v = jnp.split(x @ w["qkv"], 3, axis=-1)
        x = x + jax.nn.softmax(q @ k.T / math.sqrt(width)) @ v @ w["out"]
        return ((x + jax.nn.relu(x @ w["up"]) @ w["down"]) * cotangent).sum()

    argnums = (0, 1) if weight_gradients else 1
    cost = jax.jit(jax.grad(loss, argnums)).lower(weights, x).compile().cost_analysis()
    counted = (cost[0] if isinstance(cost, list) else cost)["flops"]
    formula = transformer_flops(_block_weights(width, mlp), seq, 1, width, weight_gradients=weight_gradients)
    assert counted == pytest.approx(formula, rel=0.06)
