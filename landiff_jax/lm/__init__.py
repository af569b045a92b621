"""The semantic LM: token layout, Flax model with an explicit KV cache, converter for
llm/model.safetensors, the one-jit guided sampler, and its group-at-a-time form for long videos.

The package's face: `LMConfig` (presets), `abstract_params(cfg)`, `convert_params(state_dict, cfg) ->
(params, report)`, the jitted entry point `sample(params, cfg, ...)`, and `GroupStream`
(streaming: one group per call, a sliding KV window).
"""

from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.convert import convert_params, lm_rules, load_lm
from landiff_jax.lm.layout import FrameLayout, Vocab, frame_layout, num_codes
from landiff_jax.lm.model import SemanticLM, abstract_params, init_cache
from landiff_jax.lm.sampler import SampleOptions, SampleOutput, sample
from landiff_jax.lm.stream import GroupStream

__all__ = [
    "FrameLayout",
    "GroupStream",
    "LMConfig",
    "SampleOptions",
    "SampleOutput",
    "SemanticLM",
    "Vocab",
    "abstract_params",
    "convert_params",
    "frame_layout",
    "init_cache",
    "lm_rules",
    "load_lm",
    "num_codes",
    "sample",
]
