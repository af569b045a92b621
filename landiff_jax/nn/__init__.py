"""Building blocks shared by every LanDiff model."""

from landiff_jax.nn.attention import decode_attention, dot_product_attention, sequence_parallel_attention
from landiff_jax.nn.dense import dense, scan_layers
from landiff_jax.nn.embeddings import timestep_embedding
from landiff_jax.nn.group_norm import GroupNorm
from landiff_jax.nn.mlp import GatedMlp, Mlp
from landiff_jax.nn.norms import LayerNorm, RMSNorm
from landiff_jax.nn.rope import apply_rope, rope_1d_angles, rope_3d_angles

__all__ = [
    "GatedMlp",
    "GroupNorm",
    "LayerNorm",
    "Mlp",
    "RMSNorm",
    "apply_rope",
    "decode_attention",
    "dense",
    "dot_product_attention",
    "rope_1d_angles",
    "rope_3d_angles",
    "scan_layers",
    "sequence_parallel_attention",
    "timestep_embedding",
]
