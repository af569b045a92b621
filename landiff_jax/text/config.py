"""T5 encoder configuration (v1.1 / Flan style: gated tanh-GELU, relative position buckets)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp


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
    # nn.attention.ATTENTION, chosen by `runtime` (cuDNN for bf16 on GPU, XLA otherwise)
    attention_implementation: str = "xla"

    @property
    def inner_dim(self) -> int:
        """Width of the concatenated attention heads (num_heads · d_kv; may differ from d_model)."""
        return self.num_heads * self.d_kv


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
