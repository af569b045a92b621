"""Benchmark: semantic tokenizer decode (13 frames' codes → features, as the semantic conditioner
runs it; the original's conditioner — this decode plus the upsampler — takes 66 ms on one H100)
and encode of a video clip (Theia + TiTok encoder + VQ).

    python -m tools.bench.tokenizer --preset full --dtype bfloat16 [--stage decode|encode|both]

The encode clip is `--frames` RGB frames of `--height`×`--width`, of which every `--frame_stride`-th
is tokenized (49 frames at stride 4 → the 13 frames of one group, matching the VAE's 4× temporal
compression; stride 1 encodes all frames as one I-frame plus P-frames). Random weights of the
released shapes are created on the device by a jitted init. Prints one JSON line per stage.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

from landiff_jax import runtime
from landiff_jax.tokenizer import TokenizerConfig, VideoVQ
from landiff_jax.tokenizer.model import init_inputs
from tools.bench.common import emit, peak_memory_gb, time_jitted

flags.DEFINE_enum('preset', "full", ['tiny', 'full'], 'preset')
flags.DEFINE_enum('dtype', "bfloat16", ['bfloat16', 'float32'], 'dtype')
flags.DEFINE_enum('stage', "both", ['decode', 'encode', 'both'], 'stage')
flags.DEFINE_integer('batch', 1, 'batch')
flags.DEFINE_integer('frames', None, "RGB frames of the encoded clip (default: one group, 49 at full size)")
flags.DEFINE_integer('frame_stride', 4, "tokenize every n-th frame of the clip")
flags.DEFINE_integer('height', None, "frame height (default: 16 × the feature grid)")
flags.DEFINE_integer('width', None, "frame width (default: 16 × the feature grid)")
flags.DEFINE_integer('repeats', 10, 'repeats')
FLAGS = flags.FLAGS


def main(argv):
    args = FLAGS

    dtype = jnp.dtype(args.dtype)
    attention = runtime.choose(dtype, 64).attention
    cfg = getattr(TokenizerConfig, args.preset)(dtype=dtype, param_dtype=dtype, attention=attention)
    model = VideoVQ(cfg)
    init = jax.jit(lambda key: model.init(key, *init_inputs(cfg, with_video=True), method=VideoVQ.initialize))
    params = nn.meta.unbox(init(jax.random.key(0))["params"])
    common = {"preset": args.preset, "dtype": args.dtype, "batch": args.batch,
              "attention": attention}
    keys = jax.random.split(jax.random.key(1), 2)

    if args.stage in ("decode", "both"):
        num_frames = cfg.temporal_size
        codes = jax.random.randint(keys[0], (args.batch, cfg.num_codes(num_frames)), 0, cfg.codebook_size)
        decode = jax.jit(lambda params, codes: model.apply({"params": params}, codes, num_frames,
                                                           method=VideoVQ.decode_codes))
        compile_s, ms = time_jitted(decode, params, codes, repeats=args.repeats)
        emit({"stage": "tokenizer_decode", "ms_per_call": round(ms, 3), "compile_s": round(compile_s, 2),
              **peak_memory_gb(), **common, "frames": num_frames, "codes": codes.shape[1],
              "tokens": cfg.seq_len(num_frames),
              "reference_ms": "66 (decode + upsampler)" if args.preset == "full" else None})

    if args.stage in ("encode", "both"):
        theia = cfg.theia
        height = args.height or theia.patch_size * theia.output_shape[0]
        width = args.width or theia.patch_size * theia.output_shape[1]
        frames = args.frames or (cfg.temporal_size - 1) * args.frame_stride + 1
        num_frames = len(range(0, frames, args.frame_stride))
        video = jax.jit(lambda k: jax.random.randint(k, (args.batch, frames, height, width, 3), 0, 256)
                        .astype(jnp.uint8))(keys[1])
        encode = jax.jit(lambda params, video: model.apply({"params": params}, video[:, ::args.frame_stride],
                                                           method=VideoVQ.encode_video))
        compile_s, ms = time_jitted(encode, params, video, repeats=args.repeats)
        emit({"stage": "tokenizer_encode", "ms_per_call": round(ms, 3), "compile_s": round(compile_s, 2),
              **peak_memory_gb(), **common, "clip": [frames, height, width], "frame_stride": args.frame_stride,
              "tokenized_frames": num_frames, "codes": cfg.num_codes(num_frames)})


if __name__ == "__main__":
    app.run(main)
