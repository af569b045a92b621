"""The semantic LM: token layout, Flax model with an explicit KV cache, converter for
llm/model.safetensors, and the one-jit guided sampler."""

from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.convert import convert_lm, lm_rules, load_lm
from landiff_jax.lm.layout import FrameLayout, Vocab, frame_layout, num_codes
from landiff_jax.lm.model import SemanticLM, abstract_params, init_cache, init_params
from landiff_jax.lm.sampler import SampleOptions, SampleOutput, sample

__all__ = [
    "FrameLayout",
    "LMConfig",
    "SampleOptions",
    "SampleOutput",
    "SemanticLM",
    "Vocab",
    "abstract_params",
    "convert_lm",
    "frame_layout",
    "init_cache",
    "init_params",
    "lm_rules",
    "load_lm",
    "num_codes",
    "sample",
]
