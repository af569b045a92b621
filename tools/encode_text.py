"""Encode prompts with T5 and print the embedding shape.

    python tools/encode_text.py --preset tiny --prompt "A red fox in the snow."
    python tools/encode_text.py --t5_dir ckpts/LanDiff/CogVideoX-2b-sat/t5-v1_1-xxl --side diffusion --prompt "..."

`--t5_dir` is an HF T5 directory: its `spiece.model` tokenizes and, when it holds config.json and
weights, those weights are used. Without it the weights are RANDOM (the preset's shape) and the
text is turned into byte-level ids, so the numbers mean nothing: this only shows the code path.
"""

from pathlib import Path

from absl import app, flags

from landiff_jax import cli

flags.DEFINE_enum("preset", "tiny", ["tiny", "xxl"], "model shape when --t5_dir has no weights")
flags.DEFINE_multi_string("prompt", None, "a prompt (repeat for a batch)")
flags.DEFINE_string("t5_dir", None, "HF T5 directory (spiece.model, optionally config.json + safetensors)")
flags.DEFINE_enum("side", "lm", ["lm", "diffusion"],
                  "lm: Flan-T5 use (left padding, mask); diffusion: T5 v1.1 use (right padding to --text_length)")
flags.DEFINE_integer("text_length", 226, "diffusion side: padded length (the DiT's text_length)")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "parameter and compute dtype")
flags.DEFINE_integer("seed", 0, "seed of the random weights")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax.numpy as jnp

    from landiff_jax import text
    from landiff_jax.nn.init import random_params

    prompts = FLAGS.prompt or ["A small red fox walks slowly across a quiet forest, cinematic lighting."]
    dtype = jnp.dtype(FLAGS.dtype)
    t5_dir = Path(FLAGS.t5_dir) if FLAGS.t5_dir else None
    if t5_dir is not None and not t5_dir.is_dir():
        raise app.UsageError(f"--t5_dir {t5_dir} is not a directory")

    if t5_dir is not None and (t5_dir / "config.json").is_file():
        cfg, params = text.load_t5(t5_dir, dtype)
        print(f"weights: {t5_dir}")
    else:
        cfg = getattr(text.T5Config, FLAGS.preset)(dtype=dtype, param_dtype=dtype)
        params = random_params(text.abstract_params(cfg), FLAGS.seed)
        print(f"weights: RANDOM, '{FLAGS.preset}' preset (seed {FLAGS.seed}); the embeddings are meaningless")

    if t5_dir is not None:
        tokenizer = text.T5TextTokenizer(t5_dir)
    else:
        tokenizer = text.ByteTokenizer()
        print("tokenizer: no --t5_dir given, so byte-level ids stand in for T5's sentencepiece ids")

    if FLAGS.side == "lm":
        hidden, mask = text.encode_for_lm(tokenizer, params, cfg, prompts)
        print(f"tokens per prompt: {mask.sum(axis=1).tolist()}")
    else:
        hidden = text.encode_for_diffusion(tokenizer, params, cfg, prompts, FLAGS.text_length)
    print(f"embedding shape: {tuple(hidden.shape)} ({FLAGS.side} side, {hidden.dtype})")


if __name__ == "__main__":
    cli.run(main)
