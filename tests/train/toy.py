"""A tiny Task for the trainer's tests (nothing waits on a real stage) and an in-memory data
source with get_state/set_state, plus a command-line runner for the multi-device /
multi-process subprocess tests:

    python tests/train/toy.py WORKDIR [--steps N] [--stop_after K] [--resume] [--mesh D,F]
        [--accumulation A] [--coordinator HOST:PORT --num_processes P --process_id I] [--hang_in_save N]
        [--signal_at N]

The task: y ≈ MLP(x @ proj) with `proj` frozen, dropout drawn from the step's key, and an
EMA-like model_state (running mean of the predictions) updated inside the loss.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from landiff_jax.train.config import CheckpointConfig, MeshConfig, OptimizerConfig, TrainConfig  # noqa: E402
from landiff_jax.train.task import Task  # noqa: E402

IN, PROJ, HIDDEN = 8, 8, 16
EXAMPLES = 64


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, drop):
        dense = lambda n, axes: nn.Dense(n, kernel_init=nn.with_logical_partitioning(  # noqa: E731
            nn.initializers.lecun_normal(), axes))
        h = jnp.tanh(dense(HIDDEN, ("embed", "mlp"))(x))
        return dense(1, ("mlp", None))(h * drop)


def init(key):
    k1, k2 = jax.random.split(key)
    params = nn.meta.unbox(MLP().init(k1, jnp.zeros((1, PROJ)), jnp.ones((1, HIDDEN)))["params"])
    frozen = {"proj": jax.random.normal(k2, (IN, PROJ)) / np.sqrt(IN)}
    return params, frozen, {"mean_prediction": jnp.zeros(())}


def abstract():
    boxed = jax.eval_shape(MLP().init, jax.random.PRNGKey(0), jnp.zeros((1, PROJ)), jnp.ones((1, HIDDEN)))["params"]
    _, frozen, model_state = jax.eval_shape(init, jax.random.PRNGKey(0))
    frozen = {"proj": nn.LogicallyPartitioned(frozen["proj"], ("embed", None))}
    return boxed, frozen, model_state


def loss(trainable, frozen, model_state, batch, key):
    keep = jax.random.bernoulli(key, 0.75, (batch["x"].shape[0], HIDDEN)) / 0.75
    pred = MLP().apply({"params": trainable}, batch["x"] @ frozen["proj"], keep)
    err = jnp.mean((pred - batch["y"]) ** 2)
    mean = 0.9 * model_state["mean_prediction"] + 0.1 * jax.lax.stop_gradient(jnp.mean(pred))
    return err, ({"mse": err, "mean_prediction": mean}, {"mean_prediction": mean})


TASK = Task(name="toy", loss=loss, init=init, abstract=abstract,
            example={"x": jax.ShapeDtypeStruct((IN,), jnp.float32), "y": jax.ShapeDtypeStruct((1,), jnp.float32)},
            tokens_per_example=1, flops_per_example=6.0 * (PROJ * HIDDEN + HIDDEN))


def dataset(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(EXAMPLES, IN)).astype(np.float32)
    y = np.sin(x.sum(axis=1, keepdims=True)).astype(np.float32)
    return x, y


class ArraySource:
    """Global batches of `batch` examples from a reshuffled-per-epoch permutation (seeded); this
    process takes its slice. State: the number of batches read. `seen` lists the example ids.
    signal_at: this process sends itself SIGTERM as it reads batch `signal_at` (0-based)."""

    def __init__(self, batch: int, seed: int = 0, process_index: int = 0, process_count: int = 1,
                 signal_at: int | None = None):
        self.x, self.y = dataset()
        self.batch, self.seed, self.index, self.count = batch, seed, process_index, process_count
        self.position = 0
        self.seen: list[list[int]] = []
        self.signal_at = signal_at

    def _ids(self, position: int) -> np.ndarray:
        per_epoch = EXAMPLES // self.batch
        epoch, i = divmod(position, per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(EXAMPLES)
        ids = order[i * self.batch:(i + 1) * self.batch]
        local = self.batch // self.count
        return ids[self.index * local:(self.index + 1) * local]

    def __iter__(self):
        return self

    def __next__(self):
        if self.position == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        ids = self._ids(self.position)
        self.position += 1
        self.seen.append(ids.tolist())
        return {"x": self.x[ids], "y": self.y[ids]}

    def get_state(self) -> dict:
        return {"position": self.position}

    def set_state(self, state: dict) -> None:
        self.position = int(state["position"])


def config(steps: int = 6, mesh=(-1, 1), accumulation: int = 1, batch: int = 8, every: int = 2,
           ema: float | None = 0.9) -> TrainConfig:
    return TrainConfig(
        stage="toy", model=None, steps=steps, batch_size=batch, seed=3, ema_decay=ema, log_every=1,
        optimizer=OptimizerConfig(learning_rate=1e-2, warmup_steps=2, decay="cosine", weight_decay=1e-3,
                                  clip_global_norm=1.0, accumulation_steps=accumulation),
        mesh=MeshConfig(data=mesh[0], fsdp=mesh[1]),
        checkpoint=CheckpointConfig(every=every, keep_last=2),
        compute_dtype="float32",
    )


def flat(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def hang_in_save(n: int) -> None:
    """Make the n-th save block while orbax writes it (inside the data item's handler), after
    printing IN_SAVE: the test kills the process there."""
    from landiff_jax.train import checkpointing

    original, calls = checkpointing.DataState.get_state, []

    def get_state(self):
        calls.append(1)
        if len(calls) == n:
            print("IN_SAVE", flush=True)
            time.sleep(600)
        return original(self)

    checkpointing.DataState.get_state = get_state


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("workdir")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--stop_after", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--mesh", default="-1,1")
    p.add_argument("--accumulation", type=int, default=1)
    p.add_argument("--coordinator")
    p.add_argument("--num_processes", type=int)
    p.add_argument("--process_id", type=int)
    p.add_argument("--hang_in_save", type=int, help="block inside the N-th checkpoint save (for a kill test)")
    p.add_argument("--signal_at", type=int, help="send this process SIGTERM as it reads batch N (0-based)")
    args = p.parse_args(argv)
    if args.hang_in_save:
        hang_in_save(args.hang_in_save)
    from landiff_jax.train import distributed, loop
    from landiff_jax.train.preemption import Stopped

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    cfg = config(args.steps, tuple(int(v) for v in args.mesh.split(",")), args.accumulation)
    data = ArraySource(cfg.micro_batch_size, process_index=jax.process_index(), process_count=jax.process_count(),
                       signal_at=args.signal_at)
    try:
        state = loop.train(cfg, TASK, data, args.workdir, resume=args.resume, stop_after=args.stop_after,
                           tensorboard=False)
    except Stopped as e:
        print("STOPPED", e.update, flush=True)
        sys.exit(e.exit_code)
    kernel = state.trainable["Dense_0"]["kernel"]
    print("SHARDING", kernel.sharding.spec, "DEVICES", jax.device_count(), flush=True)
    gathered = jax.tree.map(lambda x: np.asarray(jax.experimental.multihost_utils.process_allgather(x, tiled=True)),
                            state.as_dict())
    if jax.process_index() == 0:
        np.savez(Path(args.workdir) / "final.npz", **flat(gathered))


if __name__ == "__main__":
    import jax.experimental.multihost_utils  # noqa: F401

    main()
