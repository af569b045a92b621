"""Benchmark: T5 encoder forward (released use: T5-v1.1-XXL, 2 × 226 tokens, bf16; the original
takes 21.6 ms on one H100).

    python -m tools.bench.t5 --preset full --dtype bfloat16 [--batch 2 --length 226 --side diffusion]

Random weights of the released shapes are created on the device by a jitted init (nothing
full-size on the host). Prints one JSON line.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from landiff_jax import runtime
from landiff_jax.text.config import T5Config
from landiff_jax.text.encoders import encode_ids
from landiff_jax.text.t5 import T5Encoder
from tools.bench.common import emit, peak_memory_gb, time_jitted

flags.DEFINE_enum('preset', "full", ['tiny', 'full'], 'preset')
flags.DEFINE_enum('dtype', "bfloat16", ['bfloat16', 'float32'], 'dtype')
flags.DEFINE_integer('batch', 2, 'batch')
flags.DEFINE_integer('length', 226, 'length')
flags.DEFINE_enum('side', "diffusion", ['diffusion', 'lm'],
                  "diffusion: no attention mask; lm: left-padded rows with a mask")
flags.DEFINE_enum('attention', "auto", ['auto', 'xla', 'cudnn'],
                  "attention implementation (auto: runtime's, cuDNN for bf16 on GPU, XLA otherwise)")
flags.DEFINE_integer('repeats', 10, 'repeats')
FLAGS = flags.FLAGS


def main(argv):
    args = FLAGS

    dtype = jnp.dtype(args.dtype)
    attention = runtime.choose(dtype, 64).attention if args.attention == "auto" else args.attention
    cfg = getattr(T5Config, args.preset)(dtype=dtype, param_dtype=dtype, attention_implementation=attention)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(2, cfg.vocab_size, (args.batch, args.length)), jnp.int32)
    mask = None
    if args.side == "lm":  # row r has r·length/(2·batch) leading pads
        pads = np.arange(args.batch) * args.length // (2 * args.batch)
        mask = jnp.asarray(np.arange(args.length)[None, :] >= pads[:, None], jnp.int32)

    params = nn.meta.unbox(jax.jit(T5Encoder(cfg).init)(jax.random.key(0), ids[:1, :8])["params"])
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    encode = jax.jit(lambda params, ids, mask: encode_ids(params, cfg, ids, mask))
    compile_s, ms = time_jitted(encode, params, ids, mask, repeats=args.repeats)
    emit({
        "stage": "t5_encode", "ms_per_call": round(ms, 3), "compile_s": round(compile_s, 2), **peak_memory_gb(),
        "preset": args.preset, "dtype": args.dtype, "batch": args.batch, "length": args.length, "side": args.side,
        "attention": attention, "params": n_params,
        "reference_ms": 21.6 if (args.preset, args.batch, args.length) == ("full", 2, 226) else None,
    })


if __name__ == "__main__":
    app.run(main)
