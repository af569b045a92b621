"""The one attention dispatcher: every model calls `dot_product_attention`.

On GPU with bf16/fp16 inputs it uses cuDNN's fused (flash) kernel; everywhere else XLA's
reference implementation, which is also what float32 parity runs use.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def attention_implementation(dtype, backend: str | None = None) -> str:
    """'cudnn' for half precision on GPU, 'xla' otherwise."""
    backend = backend or jax.default_backend()
    if backend == "gpu" and jnp.dtype(dtype) in [jnp.dtype(d) for d in _CUDNN_DTYPES]:
        return "cudnn"
    return "xla"


def dot_product_attention(q, k, v, *, mask=None, bias=None, scale=None, implementation=None):
    """softmax(q·kᵀ·scale + bias + mask) v.

    q: [b s h d], k and v: [b t h d] (k/v may have fewer heads for grouped attention).
    mask: boolean, broadcastable to [b h s t], True where a query may attend a key.
    bias: optional additive float logits bias, 4-D, broadcastable to [b h s t] (e.g. T5's
    relative position bias); added after scaling, before the mask.
    scale: defaults to 1/sqrt(d).
    implementation: None picks `attention_implementation(q.dtype)`; 'cudnn' raises on
    unsupported inputs instead of silently falling back.
    """
    impl = implementation or attention_implementation(q.dtype)
    if mask is not None:
        mask = jnp.asarray(mask, dtype=bool)
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale, implementation=impl)
