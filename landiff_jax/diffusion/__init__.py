"""The diffusion stage: control DiT (CogVideoX-2B + control branch), semantic conditioner, zero-SNR
schedule, guided DPM++(2M) SDE sampler, and the converter of the two sat checkpoints.

The package's face: `DiTConfig` / `SamplerConfig` (presets), `abstract_params(cfg, tokenizer_cfg)`,
`convert_params(base, diffusion, cfg, tokenizer_cfg) -> (params, report)`, and the jitted entry points
`semantic_feature(params, cfg, tokenizer_cfg, codes, ...)` (once per generation) and
`sample(params, cfg, sampler_cfg, context, ...)` (the guided loop).
"""

from landiff_jax.diffusion.api import abstract_params
from landiff_jax.diffusion.conditioner import semantic_feature
from landiff_jax.diffusion.config import DiTConfig, SamplerConfig, SemanticCondConfig
from landiff_jax.diffusion.convert import convert_params, load_diffusion
from landiff_jax.diffusion.sampler import sample

__all__ = [
    "DiTConfig",
    "SamplerConfig",
    "SemanticCondConfig",
    "abstract_params",
    "convert_params",
    "load_diffusion",
    "sample",
    "semantic_feature",
]
