"""Benchmark of one training update of a stage through the trainer's own step (the jitted,
sharded, donated train_step of landiff_jax/train), with random weights of the stage's shapes.

usage: python -m tools.bench.train lm|tokenizer|control|dit --preset full [--batch 8] [--remat none]
       [--steps 10] [--text_len 256] [--dtype bfloat16] [--mesh data,fsdp,tensor] [--profile 5]
       python -m tools.bench.train --config configs/tiny_dit.py [key=value ...] [--batch B] [--dtype D]
                                   [--profile 5]
The tokenizer, control and dit stages are their recipe configs (configs/tokenizer{,_tiny}.py,
configs/diffusion_control{,_tiny}.py; dit = the same in mode 'base') with random weights instead of
`init_from`, and random examples of the task's fields (normal floats, codes of the codebook).
LM sequences: BOS, 2 micro conditions, `text_len` text rows, then SOI … EOS of 13 semantic
frames (1,244 positions with 1,218 codes at full size). `--config` benches any training config
file as it stands (its batch, dtype and remat unless given; random weights, no `init_from`), with
tools/train.py's `key=value` overrides (e.g. `model.dit.scan_unroll=6`).
`--profile N` traces N more updates and prints the device's busiest ops (`common.op_times`).
Prints one JSON line: median ms per update after compile, compile seconds, tokens/s, examples/s,
model TFLOP/s, MFU against the device's dense bf16 peak (train.metrics.PEAK_FLOPS; 989 TFLOP/s for
H100/H200), peak memory.

FLOPs per sequence of S positions (train.task.lm_flops_per_sequence):
    6·N·S + 6·L·S²·d
with N the weights every position multiplies (24 blocks of 4d² + 3·d·mlp, and the d×V head),
L layers, d hidden; the second term is causal attention (QKᵀ and AV, ×3 for the backward,
half of the S×S square). Conditioning MLPs (text rows only) are left out.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from landiff_jax import cli  # noqa: E402
from landiff_jax.train.config import DataConfig, MeshConfig, OptimizerConfig, TrainConfig  # noqa: E402
from landiff_jax.train.metrics import peak_flops  # noqa: E402
from landiff_jax.train.optimizer import learning_rate_schedule, make_optimizer  # noqa: E402
from landiff_jax.train.step import batch_shardings, create_state, make_train_step, state_shardings  # noqa: E402
from landiff_jax.train.task import apply_policy, make_task  # noqa: E402
from tools.bench.common import emit, op_times, peak_memory_gb  # noqa: E402


def lm_config(args) -> TrainConfig:
    from landiff_jax.lm.config import LMConfig

    model = LMConfig.full() if args.preset == "full" else LMConfig.tiny()  # kernels: runtime, via train.task
    frames = 13 if args.preset == "full" else 3
    text_len = args.text_len or (256 if args.preset == "full" else 8)
    mesh = [int(v) for v in args.mesh.split(",")]
    return TrainConfig(
        stage="lm", model=model, steps=1000, batch_size=args.batch, compute_dtype=args.dtype,
        remat=args.remat or "none",
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=100), mesh=MeshConfig(*mesh),
        data=DataConfig(frames=frames, text_len=text_len),
    )


def lm_batch(task, config: TrainConfig, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random LM examples: T5-like features with half the text rows padded, codes of the codebook."""
    rng = np.random.default_rng(seed)
    ex = task.example
    text_len = ex["text_mask"].shape[0]
    return {
        "text_embedding": rng.normal(size=(rows, *ex["text_embedding"].shape)).astype(np.float32),
        "text_mask": np.broadcast_to(np.arange(text_len) < max(text_len // 2, 1), (rows, text_len)).copy(),
        "codes": rng.integers(0, config.model.codebook_size, (rows, *ex["codes"].shape)).astype(np.int32),
        "frames": np.full((rows,), config.data.frames, np.int32),
        "motion_score": rng.uniform(0, 5, rows).astype(np.float32),
    }


def recipe_config(name: str, **model_fields):
    """TrainConfig of configs/<name>.py (full) or its _tiny variant, with the bench's batch, remat,
    dtype and mesh, no checkpoint to start from."""
    def make(args) -> TrainConfig:
        from landiff_jax import config_file

        path = REPO / "configs" / f"{name}{'' if args.preset == 'full' else '_tiny'}.py"
        config = config_file.load(path)
        mesh = [int(v) for v in args.mesh.split(",")]
        model = dataclasses.replace(config.model, **model_fields) if model_fields else config.model
        return config.replace(model=model, batch_size=args.batch, compute_dtype=args.dtype, mesh=MeshConfig(*mesh),
                              init_from="", **({"remat": args.remat} if args.remat else {}))
    return make


def random_batch(task, config: TrainConfig, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random examples of the task's fields: normal floats, integers below the codebook size."""
    rng = np.random.default_rng(seed)
    batch = {}
    for name, field in task.example.items():
        shape = (rows, *field.shape)
        if np.issubdtype(field.dtype, np.integer):
            tokenizer = getattr(config.model, "tokenizer", None)
            batch[name] = rng.integers(0, tokenizer.codebook_size, shape).astype(field.dtype)
        else:
            batch[name] = rng.normal(size=shape).astype(field.dtype)
    if "latent_std" in batch:
        batch["latent_std"] = np.abs(batch["latent_std"]) * 0.1
    return batch


def training_attention(config: TrainConfig) -> str | None:
    """The attention kernel the stage's transformer trains with: the LM's causal one, the DiT's
    (diffusion) or the tokenizer's (its `model`)."""
    model = getattr(config.model, "dit", None) or getattr(config.model, "model", None) or config.model
    policy = apply_policy(model, config)
    return getattr(policy, "train_attention", None) or getattr(policy, "attention", None)


def file_config(args, overrides) -> TrainConfig:
    """The training config file `--config` with its `key=value` overrides (as tools/train.py takes
    them) and the bench's flags, no checkpoint to start from."""
    from landiff_jax import config_file

    config = config_file.load(args.config, overrides)
    given = {"batch_size": args.batch} if FLAGS["batch"].present else {}
    given.update({"compute_dtype": args.dtype} if FLAGS["dtype"].present else {})
    given.update({"remat": args.remat} if args.remat else {})
    return config.replace(init_from="", **given)


STAGES = {
    "lm": (lm_config, lm_batch),
    "tokenizer": (recipe_config("tokenizer"), random_batch),
    "control": (recipe_config("diffusion_control"), random_batch),
    "dit": (recipe_config("diffusion_control", mode="base"), random_batch),
}


flags.DEFINE_enum("preset", "tiny", ["tiny", "full"], "model sizes")
flags.DEFINE_integer("batch", 8, "global sequences per update")
flags.DEFINE_string("remat", None, "remat policy name (default: none for lm, else the recipe config's)")
flags.DEFINE_integer("steps", 10, "timed updates after the compile")
flags.DEFINE_integer("text_len", None, "text rows per sequence (default 256 full, 8 tiny)")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "compute dtype")
flags.DEFINE_string("mesh", "-1,1,1", "data,fsdp,tensor sizes (-1: the rest)")
flags.DEFINE_string("config", None, "bench this training config file instead of a stage's recipe")
flags.DEFINE_integer("profile", 0, "trace this many more updates and print the busiest device ops")
FLAGS = flags.FLAGS
REPO = Path(__file__).resolve().parents[2]


def main(argv):
    args = FLAGS
    if args.config:
        if any("=" not in arg for arg in argv[1:]):
            raise app.UsageError("give either a stage or --config (with key=value overrides), not both")
        config = file_config(args, argv[1:])
        name, make_batch = Path(args.config).stem, (lm_batch if config.stage == "lm" else random_batch)
    elif len(argv) != 2 or argv[1] not in STAGES:
        raise app.UsageError(f"give one stage: {', '.join(sorted(STAGES))}")
    else:
        name, (make_config, make_batch) = argv[1], STAGES[argv[1]]
        config = make_config(args)
    task = make_task(config)
    from landiff_jax import parallel

    mesh = parallel.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    optimizer = make_optimizer(config.optimizer, config.steps)
    ema_decay = config.ema_decay if args.config else None  # the stage recipes are benched without
    shardings = state_shardings(task, optimizer, mesh, ema=ema_decay is not None)
    state = create_state(task, optimizer, config.seed, ema_decay is not None, shardings)
    batch = jax.device_put(make_batch(task, config, config.batch_size), batch_shardings(task, mesh))
    step = make_train_step(task, optimizer, learning_rate_schedule(config.optimizer, config.steps),
                           config.optimizer.accumulation_steps, ema_decay, shardings, mesh)

    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    if args.profile:
        def update():
            nonlocal state
            state, metrics = compiled(state, batch)
            return metrics
        op_times(update, args.profile)
    flops = config.batch_size * task.flops_per_example / seconds
    peak = peak_flops(jax.devices()[0].device_kind)
    emit({
        "stage": name, "preset": None if args.config else args.preset, "batch": config.batch_size,
        "remat": config.remat, "attention": training_attention(config), "dtype": config.compute_dtype,
        "tokens_per_sequence": task.tokens_per_example, "ms_per_update": round(seconds * 1e3, 2),
        "compile_s": round(compile_s, 1), "examples_per_s": round(config.batch_size / seconds, 2),
        "tokens_per_s": round(config.batch_size * task.tokens_per_example / seconds, 1),
        "model_tflops_per_s": round(flops / 1e12, 2),
        "mfu": round(flops / (jax.device_count() * peak), 4) if peak else None,
        "loss": float(jnp.asarray(metrics["loss"])), **peak_memory_gb(),
    })


if __name__ == "__main__":
    cli.run(main)
