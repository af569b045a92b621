"""Dense layers with logical axis names, and layer scanning."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# activation rematerialisation of a scanned layer body: what the backward pass keeps
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only each layer's input
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep weight matmul outputs
}


def dense(
    features: int,
    axes: tuple[str, str],
    *,
    use_bias: bool = True,
    name: str | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    kernel_init: Callable = nn.initializers.lecun_normal(),
) -> nn.Dense:
    """A Dense whose kernel [in, out] carries the logical names `axes` and bias `axes[1]`."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        name=name,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(kernel_init, axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axes[1],)),
    )


def scan_layers(block_cls: type[nn.Module], num_layers: int, *, in_axes=(), name="layers", remat: str = "none",
                unroll: int = 1, **block_kwargs):
    """Instantiate `block_cls` once, scanned `num_layers` times over a leading `layers` axis.

    The block's `__call__(x, *args)` must return `(x, per_layer_output_or_None)`; `in_axes` says
    how each extra argument is fed (`nn.broadcast` for shared inputs, 0 for per-layer ones).
    remat: 'none', or a key of REMAT_POLICIES (the layer body is recomputed in the backward pass).
    unroll: layers per iteration of the loop (lax.scan's `unroll`).
    """
    if remat != "none":
        if remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be 'none' or one of {sorted(REMAT_POLICIES)}, got {remat!r}")
        block_cls = nn.remat(block_cls, policy=REMAT_POLICIES[remat], prevent_cse=False)
    scanned = nn.scan(
        block_cls,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=in_axes,
        length=num_layers,
        unroll=unroll,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    return scanned(name=name, **block_kwargs)
