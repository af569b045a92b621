"""Benchmark: T5 encoder forward (released use: T5-v1.1-XXL, 2 × 226 tokens, bf16; the original
takes 21.6 ms on one H100).

    python tools/bench/t5.py --preset full --dtype bfloat16 [--batch 2 --length 226 --side diffusion]

Random weights of the released shapes are created on the device by a jitted init (nothing
full-size on the host). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import emit, peak_memory_gb, time_jitted  # noqa: E402

from landiff_jax.nn import attention_implementation  # noqa: E402
from landiff_jax.text.config import T5Config  # noqa: E402
from landiff_jax.text.encoders import encode_ids  # noqa: E402
from landiff_jax.text.t5 import T5Encoder  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=("tiny", "full"), default="full")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--length", type=int, default=226)
    p.add_argument("--side", choices=("diffusion", "lm"), default="diffusion",
                   help="diffusion: no attention mask; lm: left-padded rows with a mask")
    p.add_argument("--attention", choices=("auto", "xla", "cudnn"), default="auto",
                   help="attention implementation (auto: cuDNN for bf16 on GPU, XLA otherwise)")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)

    dtype = jnp.dtype(args.dtype)
    attention = None if args.attention == "auto" else args.attention
    cfg = getattr(T5Config, args.preset)(dtype=dtype, param_dtype=dtype, attention_implementation=attention)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(2, cfg.vocab_size, (args.batch, args.length)), jnp.int32)
    mask = None
    if args.side == "lm":  # row r has r·length/(2·batch) leading pads
        pads = np.arange(args.batch) * args.length // (2 * args.batch)
        mask = jnp.asarray(np.arange(args.length)[None, :] >= pads[:, None], jnp.int32)

    params = nn.meta.unbox(jax.jit(T5Encoder(cfg).init)(jax.random.key(0), ids[:1, :8])["params"])
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    encode = jax.jit(lambda params, ids, mask: encode_ids(params, ids, mask, cfg))
    compile_s, ms = time_jitted(encode, params, ids, mask, repeats=args.repeats)
    emit({
        "stage": "t5_encode", "ms_per_call": round(ms, 3), "compile_s": round(compile_s, 2), **peak_memory_gb(),
        "preset": args.preset, "dtype": args.dtype, "batch": args.batch, "length": args.length, "side": args.side,
        "attention": attention or attention_implementation(dtype), "params": n_params,
        "reference_ms": 21.6 if (args.preset, args.batch, args.length) == ("full", 2, 226) else None,
    })


if __name__ == "__main__":
    main()
