"""Encode prompts with T5 and print the embedding shape.

    python -m landiff_jax.text --preset tiny --prompt "A red fox in the snow."
    python -m landiff_jax.text --t5-dir ckpts/LanDiff/CogVideoX-2b-sat/t5-v1_1-xxl --side diffusion --prompt "..."

`--t5-dir` is an HF T5 directory: its `spiece.model` tokenizes and, when it holds config.json and
weights, those weights are used. Without it the weights are RANDOM (the preset's shape) and the
text is turned into byte-level ids, so the numbers mean nothing: this only shows the code path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.text.config import T5Config
from landiff_jax.text.convert import load_t5
from landiff_jax.text.encoders import encode_for_diffusion, encode_for_lm
from landiff_jax.text.t5 import T5Encoder
from landiff_jax.text.tokenizer import ByteTokenizer, T5TextTokenizer


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m landiff_jax.text", description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=("tiny", "xxl"), default="tiny", help="model shape when --t5-dir has no weights")
    p.add_argument("--prompt", action="append", help="a prompt (repeat for a batch)")
    p.add_argument("--t5-dir", type=Path, help="HF T5 directory (spiece.model, optionally config.json + safetensors)")
    p.add_argument("--side", choices=("lm", "diffusion"), default="lm",
                   help="lm: Flan-T5 use (left padding, mask); diffusion: T5 v1.1 use (right padding to --text-length)")
    p.add_argument("--text-length", type=int, default=226, help="diffusion side: padded length (the DiT's text_length)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    prompts = args.prompt or ["A small red fox walks slowly across a quiet forest, cinematic lighting."]
    dtype = jnp.dtype(args.dtype)

    if args.t5_dir is not None and (args.t5_dir / "config.json").is_file():
        cfg, params = load_t5(args.t5_dir, dtype)
        print(f"weights: {args.t5_dir}")
    else:
        cfg = getattr(T5Config, args.preset)(dtype=dtype, param_dtype=dtype)
        ids = jnp.zeros((1, 1), jnp.int32)
        params = nn.meta.unbox(jax.jit(T5Encoder(cfg).init)(jax.random.key(args.seed), ids)["params"])
        print(f"weights: RANDOM, '{args.preset}' preset (seed {args.seed}); the embeddings are meaningless")

    if args.t5_dir is not None:
        tokenizer = T5TextTokenizer(args.t5_dir)
    else:
        tokenizer = ByteTokenizer()
        print("tokenizer: no --t5-dir given, so byte-level ids stand in for T5's sentencepiece ids")

    if args.side == "lm":
        hidden, mask = encode_for_lm(tokenizer, params, cfg, prompts)
        print(f"tokens per prompt: {mask.sum(axis=1).tolist()}")
    else:
        hidden = encode_for_diffusion(tokenizer, params, cfg, prompts, args.text_length)
    print(f"embedding shape: {tuple(hidden.shape)} ({args.side} side, {hidden.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
