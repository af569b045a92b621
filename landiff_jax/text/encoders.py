"""The two ways LanDiff encodes a prompt with T5.

- LM side (Flan-T5-XXL, `FlanT5XXL` in the original): left padding to the longest prompt
  (≤ 512 tokens), with the attention mask; the LM takes each prompt's unpadded rows.
- Diffusion side (T5-v1.1-XXL, `FrozenT5Embedder`): right padding to the DiT's `text_length`
  (226 released), truncation, and NO attention mask: padding positions are attended and get
  embeddings of their own, as in the original.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np

from landiff_jax.text.config import T5Config
from landiff_jax.text.t5 import T5Encoder
from landiff_jax.text.tokenizer import T5TextTokenizer


@functools.partial(jax.jit, static_argnames="cfg")
def encode_ids(params, cfg: T5Config, input_ids, attention_mask):
    """last_hidden_state [b s d] of T5Encoder(cfg); compiled once per (cfg, shapes, mask or None)."""
    return T5Encoder(cfg).apply({"params": params}, input_ids, attention_mask)


def _check_vocab(tokenizer: T5TextTokenizer, cfg: T5Config) -> None:
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the T5 model only {cfg.vocab_size}")


def encode_for_lm(tokenizer: T5TextTokenizer, params, cfg: T5Config, texts: Sequence[str], min_length: int = 0):
    """→ (hidden [b n d], mask [b n] bool, False = padding); left-padded to the longest prompt
    and to at least `min_length` tokens."""
    _check_vocab(tokenizer, cfg)
    ids, mask = tokenizer.encode_lm(texts, min_length=min_length)
    return encode_ids(params, cfg, ids, mask), mask.astype(bool)


def encode_for_diffusion(tokenizer: T5TextTokenizer, params, cfg: T5Config, texts: Sequence[str], text_length: int):
    """→ hidden [b text_length d]; right-padded, truncated, padding attended (no mask)."""
    _check_vocab(tokenizer, cfg)
    return encode_ids(params, cfg, tokenizer.encode_diffusion(texts, text_length), None)


def unpadded(hidden, mask) -> list[np.ndarray]:
    """Per prompt, the rows of real tokens ([n_i d]), as the original's `encode_texts`."""
    hidden, mask = np.asarray(hidden), np.asarray(mask, bool)
    return [h[m] for h, m in zip(hidden, mask)]
