"""Our Pallas kernels: Hopper flash attention (the DiT's) and split-K decode attention (the LM's
cached steps), and jax's Pallas TPU flash attention behind our layout. `runtime` decides where
each is used; models receive the choice in their configs."""

from landiff_jax.kernels.decode_attention import BLOCK as DECODE_BLOCK
from landiff_jax.kernels.decode_attention import pallas_decode_attention
from landiff_jax.kernels.hopper_attention import HEAD_DIMS as HOPPER_HEAD_DIMS
from landiff_jax.kernels.hopper_attention import hopper_attention
from landiff_jax.kernels.tpu_attention import supports_head_dim as tpu_supports_head_dim
from landiff_jax.kernels.tpu_attention import tpu_flash_attention

__all__ = ["DECODE_BLOCK", "HOPPER_HEAD_DIMS", "hopper_attention", "pallas_decode_attention", "tpu_flash_attention",
           "tpu_supports_head_dim"]
