"""T5 text encoders (Flax) and the sentencepiece tokenizer: Flan-T5-XXL for the LM, T5-v1.1-XXL
for the diffusion model."""

from landiff_jax.text.config import T5Config
from landiff_jax.text.convert import load_t5, t5_rules
from landiff_jax.text.encoders import encode_for_diffusion, encode_for_lm, encode_ids, unpadded
from landiff_jax.text.t5 import T5Encoder
from landiff_jax.text.tokenizer import ByteTokenizer, T5TextTokenizer, TruncationWarning

__all__ = [
    "ByteTokenizer",
    "T5Config",
    "T5Encoder",
    "T5TextTokenizer",
    "TruncationWarning",
    "encode_for_diffusion",
    "encode_for_lm",
    "encode_ids",
    "load_t5",
    "t5_rules",
    "unpadded",
]
