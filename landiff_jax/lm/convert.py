"""Key table for `llm/model.safetensors` (the LM's own weights: 185 keys at full size).

The file holds `Semantic1DLM.state_dict()` minus the frozen Flan-T5 and tokenizer, which come
from their own files through their own converters.

The micro-condition null embeddings (`micro_condition.null_cond_embeddings.<key>`) exist only
in checkpoints trained with frames / motion-score drops (the paper's recipe; the released file
has none). With a drop probability > 0 in the config, a checkpoint lacking one gets it created
as the original initialises it, N(0, 1/freq_dim), from `init_key`; with probability 0 a
checkpoint's null embeddings are ignored (counted in the report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import jax
import numpy as np

from landiff_jax.convert import IDENTITY, LINEAR, Rule, Transform, convert, layer_keys, read_safetensors
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.model import abstract_params


def lm_rules(cfg: LMConfig) -> list[Rule]:
    h, k, n = cfg.num_heads, cfg.head_dim, cfg.num_layers
    # fused [q | k | v] Linear [3·h·k, d] -> [d, 3, h, k]; output Linear [d, h·k] -> [h, k, d]
    qkv = Transform("qkv", lambda a: a.T.reshape(a.shape[1], 3, h, k), lambda s: (s[1] * s[2] * s[3], s[0]))
    out = Transform("out", lambda a: a.T.reshape(h, k, a.shape[0]), lambda s: (s[2], s[0] * s[1]))
    block = "transformer.blocks.{i}."
    rules = [
        Rule("token_embed/embedding", "visual_embedding_model.tok_emb_code.weight"),
        Rule("text_cond/null_text_embedding", "cond_model.null_text_embedding"),
        Rule("final_norm/scale", "transformer.layer_norm.weight"),
        Rule("final_norm/bias", "transformer.layer_norm.bias"),
        Rule("head/kernel", "transformer.head.weight", LINEAR),
        Rule("layers/norm0/scale", layer_keys(block + "norm0.weight", n)),
        Rule("layers/norm1/scale", layer_keys(block + "norm1.weight", n)),
        Rule("layers/wqkv/kernel", layer_keys(block + "wqkv.weight", n), qkv),
        Rule("layers/wo/kernel", layer_keys(block + "wo.weight", n), out),
        Rule("layers/mlp/gate/kernel", layer_keys(block + "mlp.w1.weight", n), LINEAR),
        Rule("layers/mlp/up/kernel", layer_keys(block + "mlp.w3.weight", n), LINEAR),
        Rule("layers/mlp/down/kernel", layer_keys(block + "mlp.w2.weight", n), LINEAR),
    ]
    rules += [Rule(f"micro_cond/null_{key}", null_key(key)) for key in cfg.micro_keys if cfg.micro_drop_prob(key) > 0]
    mlps = [("text_cond/mlp", "cond_model.embeddings.fc0", "cond_model.embeddings.fc1")]
    mlps += [(f"micro_cond/{key}", f"micro_condition.mlps.{key}.0", f"micro_condition.mlps.{key}.2")
             for key in cfg.micro_keys]
    for ours, first, second in mlps:
        for layer, theirs in (("fc1", first), ("fc2", second)):
            rules += [Rule(f"{ours}/{layer}/kernel", f"{theirs}.weight", LINEAR),
                      Rule(f"{ours}/{layer}/bias", f"{theirs}.bias", IDENTITY)]
    return rules


NULL_PREFIX = "micro_condition.null_cond_embeddings."


def null_key(key: str) -> str:
    return NULL_PREFIX + key


def with_null_embeddings(state_dict: Mapping[str, np.ndarray], cfg: LMConfig, init_key) -> dict[str, np.ndarray]:
    """The state dict plus a fresh N(0, 1/freq_dim) null embedding for every micro key that
    cfg drops and the checkpoint lacks (the original's initialisation of null_cond_embeddings)."""
    out = dict(state_dict)
    for i, key in enumerate(cfg.micro_keys):
        if cfg.micro_drop_prob(key) > 0 and null_key(key) not in out:
            draw = jax.random.normal(jax.random.fold_in(init_key, i), (cfg.micro_freq_dim,), np.float32)
            out[null_key(key)] = np.asarray(draw) * cfg.micro_freq_dim**-0.5
    return out


def convert_params(state_dict: Mapping[str, np.ndarray], cfg: LMConfig, *, source: str = "LM checkpoint", target=None,
               init_key=None):
    """state dict of llm/model.safetensors -> (params, report); raises ConversionError naming every bad key.

    target: the parameters' shapes/dtypes, default `abstract_params(cfg)`.
    init_key: draws the micro null embeddings cfg needs and the checkpoint lacks (default key 0).
    """
    target = abstract_params(cfg) if target is None else target
    state_dict = with_null_embeddings(state_dict, cfg, jax.random.key(0) if init_key is None else init_key)
    return convert(lm_rules(cfg), state_dict, target, source=source, ignore_prefixes=(NULL_PREFIX,))


def load_lm(path: str | Path, cfg: LMConfig, *, init_key=None):
    """llm/model.safetensors -> plain params pytree (host numpy, cfg.param_dtype)."""
    params, _ = convert_params(read_safetensors(path), cfg, source=str(path), init_key=init_key)
    return params
