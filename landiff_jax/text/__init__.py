"""T5 text encoders (Flax) and the sentencepiece tokenizer: Flan-T5-XXL for the LM, T5-v1.1-XXL
for the diffusion model.

The package's face: `T5Config` (presets), `abstract_params(cfg)`, `convert_params(state_dict, cfg) ->
(params, report)`, and the jitted entry point `encode_ids(params, cfg, ids, mask)` (with its
host-side wrappers `encode_for_lm` / `encode_for_diffusion`).
"""

from landiff_jax.text.config import T5Config
from landiff_jax.text.convert import convert_params, load_t5, t5_rules
from landiff_jax.text.encoders import encode_for_diffusion, encode_for_lm, encode_ids, unpadded
from landiff_jax.text.t5 import T5Encoder, abstract_params
from landiff_jax.text.tokenizer import ByteTokenizer, T5TextTokenizer, TruncationWarning

__all__ = [
    "ByteTokenizer",
    "T5Config",
    "T5Encoder",
    "T5TextTokenizer",
    "TruncationWarning",
    "abstract_params",
    "convert_params",
    "encode_for_diffusion",
    "encode_for_lm",
    "encode_ids",
    "load_t5",
    "t5_rules",
    "unpadded",
]
