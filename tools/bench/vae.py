"""Benchmark: chunked VAE decode as the pipeline runs it (released size: 13×60×90×16 latent →
49×480×720×3 video; the original takes 12.8 s on one H100, 8.9 GB allocated / 21.7 GB reserved).

    python -m tools.bench.vae --preset full --dtype bfloat16 [--mode chunked|full --frames 13]

Random weights of the released shapes are made on the device by a jitted init (nothing
full-size on the host). float32 runs use precision=highest on the convolutions unless
--precision says otherwise (TF32 would leave the parity tolerances). Prints one JSON line.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from landiff_jax.nn.init import random_params
from landiff_jax.vae import api
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.model import abstract_params
from tools.bench.common import emit, peak_memory_gb, time_jitted

flags.DEFINE_enum('preset', "full", ['tiny', 'full'], 'preset')
flags.DEFINE_enum('dtype', "bfloat16", ['bfloat16', 'float32'], 'dtype')
flags.DEFINE_enum('precision', "auto", ['auto', 'default', 'high', 'highest'],
                  "conv precision (auto: highest for float32, default for bfloat16)")
flags.DEFINE_enum('mode', "chunked", ['chunked', 'full'],
                  "chunked: decode_latents (the pipeline's path); full: one decoder call")
flags.DEFINE_integer('frames', None, "latent frames (default: 13 full, 5 tiny)")
flags.DEFINE_integer('height', None, "latent height (default: 60 full, 4 tiny)")
flags.DEFINE_integer('width', None, "latent width (default: 90 full, 6 tiny)")
flags.DEFINE_integer('repeats', 3, 'repeats')
FLAGS = flags.FLAGS

# latent (t, h, w) per preset: the released 49×480×720 video, and a CPU-sized one
LATENT = {"full": (13, 60, 90), "tiny": (5, 4, 6)}


def main(argv):
    args = FLAGS

    dtype = jnp.dtype(args.dtype)
    precision = args.precision if args.precision != "auto" else ("highest" if dtype == jnp.float32 else "default")
    cfg = getattr(VAEConfig, args.preset)(dtype=dtype, param_dtype=dtype, precision=precision)
    t, h, w = (v or d for v, d in zip((args.frames, args.height, args.width), LATENT[args.preset]))

    params = random_params(abstract_params(cfg, decode_only=True))  # the decode path reads only these
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    latents = jax.random.normal(jax.random.key(1), (1, t, h, w, cfg.z_channels), jnp.float32)

    if args.mode == "chunked":
        decode = jax.jit(lambda params, z: api.decode_latents(params, cfg, z))
    else:
        decode = jax.jit(lambda params, z: api.decode_full(params, cfg, z))
    compile_s, ms = time_jitted(decode, params, latents, repeats=args.repeats)
    video_shape = jax.eval_shape(decode, params, latents).shape
    emit({
        "stage": f"vae_decode_{args.mode}", "s_per_call": round(ms / 1e3, 3), "ms_per_call": round(ms, 1),
        "compile_s": round(compile_s, 2), **peak_memory_gb(),
        "preset": args.preset, "dtype": args.dtype, "precision": precision,
        "latent_shape": [1, t, h, w, cfg.z_channels], "video_shape": list(video_shape),
        "decoder_params": n_params, "repeats": args.repeats,
        "reference": "original 12.8 s on one H100 (8.9 GB allocated, 21.7 GB reserved); target <= 6 s, <= 20 GB",
    })


if __name__ == "__main__":
    app.run(main)
