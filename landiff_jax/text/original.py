"""The original's T5 configuration (a Hugging Face `config.json` dict) → T5Config."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp

from landiff_jax.text.config import T5Config

# The only feed-forward variant LanDiff's two T5s (T5-v1.1-XXL, Flan-T5-XXL) use.
_GATED_GELU = {"feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True}


def t5_config(config: Mapping[str, Any], *, dtype=jnp.float32, param_dtype=None) -> T5Config:
    """From a Hugging Face T5 `config.json` dict (the original's argument names).

    Only the gated-GELU (v1.1 / Flan) feed-forward is supported; anything else is refused
    rather than silently computed with the wrong activation.
    """
    required = ("vocab_size", "d_model", "d_kv", "num_heads", "d_ff", "num_layers")
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"T5 config lacks {', '.join(missing)}")
    for key, expected in _GATED_GELU.items():
        found = config.get(key, expected)
        if found != expected:
            raise ValueError(f"T5 config {key}={found!r} is not supported (only {expected!r}, v1.1/Flan style)")
    return T5Config(
        vocab_size=int(config["vocab_size"]),
        d_model=int(config["d_model"]),
        d_kv=int(config["d_kv"]),
        num_heads=int(config["num_heads"]),
        d_ff=int(config["d_ff"]),
        num_layers=int(config["num_layers"]),
        relative_attention_num_buckets=int(config.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(config.get("relative_attention_max_distance", 128)),
        layer_norm_epsilon=float(config.get("layer_norm_epsilon", 1e-6)),
        dtype=dtype,
        param_dtype=param_dtype or dtype,
    )
