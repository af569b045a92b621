"""Benchmark: chunked VAE decode as the pipeline runs it (released size: 13×60×90×16 latent →
49×480×720×3 video; the original takes 12.8 s on one H100, 8.9 GB allocated / 21.7 GB reserved).

    python tools/bench/vae.py --preset full --dtype bfloat16 [--mode chunked|full --frames 13]

Random weights of the released shapes are made on the device by a jitted init (nothing
full-size on the host). float32 runs use precision=highest on the convolutions unless
--precision says otherwise (TF32 would leave the parity tolerances). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import emit, peak_memory_gb, time_jitted  # noqa: E402

from landiff_jax.vae import api  # noqa: E402
from landiff_jax.vae.config import VAEConfig  # noqa: E402
from landiff_jax.vae.model import init_params  # noqa: E402

# latent (t, h, w) per preset: the released 49×480×720 video, and a CPU-sized one
LATENT = {"full": (13, 60, 90), "tiny": (5, 4, 6)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=("tiny", "full"), default="full")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    p.add_argument("--precision", choices=("auto", "default", "high", "highest"), default="auto",
                   help="conv precision (auto: highest for float32, default for bfloat16)")
    p.add_argument("--mode", choices=("chunked", "full"), default="chunked",
                   help="chunked: decode_latents (the pipeline's path); full: one decoder call")
    p.add_argument("--frames", type=int, help="latent frames (default: 13 full, 5 tiny)")
    p.add_argument("--height", type=int, help="latent height (default: 60 full, 4 tiny)")
    p.add_argument("--width", type=int, help="latent width (default: 90 full, 6 tiny)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    dtype = jnp.dtype(args.dtype)
    precision = args.precision if args.precision != "auto" else ("highest" if dtype == jnp.float32 else "default")
    cfg = getattr(VAEConfig, args.preset)(dtype=dtype, param_dtype=dtype, precision=precision)
    t, h, w = (v or d for v, d in zip((args.frames, args.height, args.width), LATENT[args.preset]))

    params = nn.meta.unbox(jax.jit(functools.partial(init_params, cfg))(jax.random.key(0)))
    params = {"decoder": params["decoder"]}  # the decode path reads only these
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
    main(sys.argv[1:])
