"""Hugging Face T5 directory (config.json + single or sharded safetensors) → T5Encoder params."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from landiff_jax.convert import LINEAR, CheckpointError, ConversionError, Rule, convert, layer_keys, read_safetensors
from landiff_jax.text.config import T5Config
from landiff_jax.text.original import t5_config
from landiff_jax.text.t5 import abstract_params as t5_abstract_params

EMBEDDING_KEY = "shared.weight"
# T5EncoderModel's alias of the same tensor; some exports write it too, or only it.
ENCODER_EMBEDDING_KEY = "encoder.embed_tokens.weight"
# A full encoder-decoder directory (Flan-T5-XXL from the hub) also holds these; the encoder ignores them.
IGNORED_PREFIXES = ("decoder.", "lm_head.")

_MLP = (("gate", "wi_0"), ("up", "wi_1"), ("down", "wo"))


def t5_rules(cfg: T5Config) -> list[Rule]:
    """Our parameter path → HF key(s); per-layer keys are stacked on the scanned `layers` axis."""
    n = cfg.num_layers
    block = "encoder.block.{i}.layer."
    return [
        Rule("token_embedding/embedding", EMBEDDING_KEY),
        # computed by the first block only and shared by all (as HF does)
        Rule("relative_attention_bias", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
        Rule("layers/attention_norm/scale", layer_keys(block + "0.layer_norm.weight", n)),
        *(Rule(f"layers/attention/{p}/kernel", layer_keys(block + f"0.SelfAttention.{p}.weight", n), LINEAR)
          for p in "qkvo"),
        Rule("layers/mlp_norm/scale", layer_keys(block + "1.layer_norm.weight", n)),
        *(Rule(f"layers/mlp/{ours}/kernel", layer_keys(block + f"1.DenseReluDense.{theirs}.weight", n), LINEAR)
          for ours, theirs in _MLP),
        Rule("final_norm/scale", "encoder.final_layer_norm.weight"),
    ]


def _one_embedding(state_dict: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Accept `shared.weight`, `encoder.embed_tokens.weight` or both (then they must agree)."""
    state = dict(state_dict)
    if ENCODER_EMBEDDING_KEY not in state:
        return state
    alias = state.pop(ENCODER_EMBEDDING_KEY)
    shared = state.setdefault(EMBEDDING_KEY, alias)
    if shared is not alias and (shared.shape != alias.shape or not np.array_equal(shared, alias)):
        raise ConversionError(
            [f"'{EMBEDDING_KEY}' {shared.shape} and '{ENCODER_EMBEDDING_KEY}' {alias.shape} differ; they must be one tensor"],
            source,
        )
    return state


def convert_params(state_dict: Mapping[str, np.ndarray], cfg: T5Config, *, source: str = "T5 checkpoint",
               abstract_params=None):
    """HF T5 state dict → (params (numpy, cast to the target dtype), report). Raises
    ConversionError naming every missing, unexpected or misshaped key.

    abstract_params: the target shapes/dtypes; default `t5.abstract_params(cfg)`.
    """
    state = _one_embedding(state_dict, source)
    target = t5_abstract_params(cfg) if abstract_params is None else abstract_params
    return convert(t5_rules(cfg), state, target, ignore_prefixes=IGNORED_PREFIXES, source=source)


def load_t5(hf_dir: str | Path, dtype=jnp.float32) -> tuple[T5Config, dict]:
    """(cfg, params on the default device) from an HF T5 directory; parameters and compute in `dtype`."""
    hf_dir = Path(hf_dir)
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"T5 config not found: {config_path}")
    try:
        hf_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"cannot parse {config_path}: {e}") from e
    cfg = t5_config(hf_config, dtype=dtype)
    params, _ = convert_params(read_safetensors(hf_dir), cfg, source=str(hf_dir))
    return cfg, jax.device_put(params)
