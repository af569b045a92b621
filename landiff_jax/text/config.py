"""T5 encoder configuration (v1.1 / Flan style: gated tanh-GELU, relative position buckets)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

# The only feed-forward variant LanDiff's two T5s (T5-v1.1-XXL, Flan-T5-XXL) use.
_GATED_GELU = {"feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True}


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int
    d_model: int
    d_kv: int
    num_heads: int
    d_ff: int
    num_layers: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    # None: the attention dispatcher's choice (cuDNN for bf16 on GPU, XLA otherwise)
    attention_implementation: str | None = None

    @property
    def inner_dim(self) -> int:
        """Width of the concatenated attention heads (num_heads · d_kv; may differ from d_model)."""
        return self.num_heads * self.d_kv

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], *, dtype=jnp.float32, param_dtype=None) -> "T5Config":
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
        return cls(
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

    # the original's argument names are HF's
    from_original = from_hf_config

    @classmethod
    def xxl(cls, **overrides) -> "T5Config":
        """Encoder of T5-v1.1-XXL (DiT side) and Flan-T5-XXL (LM side): the same shape."""
        base = dict(vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24)
        return cls(**{**base, **overrides})

    full = xxl

    @classmethod
    def tiny(cls, **overrides) -> "T5Config":
        """The fixtures' size: d_model 32, 4 heads of 8, d_ff 64, 2 layers, vocab 384."""
        base = dict(vocab_size=384, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2)
        return cls(**{**base, **overrides})
