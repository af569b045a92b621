"""Conversion of the released PyTorch checkpoints: safe file reading and the key-table engine."""

from landiff_jax.convert.io import CheckpointError, read_latest, read_safetensors, read_torch, read_torch_tensor
from landiff_jax.convert.table import (
    CONV,
    IDENTITY,
    LINEAR,
    ConversionError,
    ConversionReport,
    Rule,
    Rules,
    Transform,
    convert,
    layer_keys,
)

__all__ = [
    "CONV",
    "IDENTITY",
    "LINEAR",
    "CheckpointError",
    "ConversionError",
    "ConversionReport",
    "Rule",
    "Rules",
    "Transform",
    "convert",
    "layer_keys",
    "read_latest",
    "read_safetensors",
    "read_torch",
    "read_torch_tensor",
]
