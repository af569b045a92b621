"""Parity runner for component `t5`: a case's HF T5 directory through load_t5, the tokenizer
and the LM-side or diffusion-side encoder, compared with the original's arrays."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from landiff_jax.parity.harness import Check, compare, load_case, tolerance_for
from landiff_jax.text.config import T5Config
from landiff_jax.text.convert import load_t5
from landiff_jax.text.encoders import encode_for_diffusion, encode_for_lm, unpadded
from landiff_jax.text.original import t5_config
from landiff_jax.text.tokenizer import T5TextTokenizer, TruncationWarning


def _tokenizer_call(meta: dict, arrays: dict) -> tuple[str, int | None]:
    """('lm', None) or ('diffusion', max_length), from the case's tokenizer config (else its arrays)."""
    call = meta["config"].get("tokenizer", {})
    if call:
        if call.get("padding_side") == "left" and call.get("padding") == "longest":
            return "lm", None
        if call.get("padding") == "max_length":
            return "diffusion", int(call["max_length"])
        raise ValueError(f"unknown T5 tokenizer call in meta.json: {call}")
    if "attention_mask" in arrays:
        return "lm", None
    return "diffusion", int(arrays["input_ids"].shape[1])


def _encode(path: str, max_length: int | None, tokenizer: T5TextTokenizer, params, cfg: T5Config, prompts) -> dict:
    """Every array the case may hold, computed by the functions a pipeline calls."""
    if path == "lm":
        ids, _ = tokenizer.encode_lm(prompts)
        hidden, mask = encode_for_lm(tokenizer, params, cfg, prompts)
        out = {"input_ids": ids, "attention_mask": mask.astype(np.int64), "last_hidden_state": hidden}
        return out | {f"unpadded_{i}": rows for i, rows in enumerate(unpadded(hidden, mask))}
    return {
        "input_ids": tokenizer.encode_diffusion(prompts, max_length),
        # the tokenizer's return_length: tokens per prompt after truncation, before padding
        "length": np.array([len(row) for row in tokenizer.tokenize(prompts, max_length)]),
        "last_hidden_state": encode_for_diffusion(tokenizer, params, cfg, prompts, max_length),
    }


def run(case_dir: Path, meta: dict) -> list[Check]:
    _, expected = load_case(case_dir)
    t5_dir = case_dir / meta["checkpoint"]["file"]
    wanted = t5_config(meta["config"]["T5Config"])
    cfg, params = load_t5(t5_dir)
    if cfg != wanted:
        return [Check("config", False, float("inf"), float("inf"),
                      f"{t5_dir}/config.json gives {cfg}, meta.json {wanted}")]
    tokenizer = T5TextTokenizer(t5_dir)
    path, max_length = _tokenizer_call(meta, expected)
    with warnings.catch_warnings():  # a case may truncate on purpose
        warnings.simplefilter("ignore", TruncationWarning)
        actual = _encode(path, max_length, tokenizer, params, cfg, meta["prompts"])

    tolerance = meta.get("tolerance", {})
    return [
        compare(name, actual[name], want, tolerance_for(tolerance, name)) if name in actual
        else Check(name, False, float("inf"), float("inf"), "not produced by the t5 runner")
        for name, want in expected.items()
    ]
