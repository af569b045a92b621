"""The training loop: start fresh or resume the latest complete checkpoint, then per update
read micro-batches, step, log and save; a final save at the end. A stop signal (SIGTERM,
Ctrl-C: `preemption`) saves the update it ends and raises `preemption.Stopped`.

`data` is this process's iterator of batches ({field: [micro_batch_size / processes, ...]}
numpy) with get_state()/set_state(); the loop makes global arrays of them.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax

from landiff_jax import parallel
from landiff_jax.config_file import ConfigError, to_dict
from landiff_jax.train import distributed
from landiff_jax.train.checkpointing import Checkpointer
from landiff_jax.train.config import TrainConfig
from landiff_jax.train.metrics import MetricsWriter, peak_flops, throughput
from landiff_jax.train.optimizer import learning_rate_schedule, make_optimizer
from landiff_jax.train.preemption import Stopped, StopRequests
from landiff_jax.train.state import TrainState
from landiff_jax.train.step import abstract_state, create_state, make_train_step, start_from, state_shardings
from landiff_jax.train.task import Task, check_batch


def make_run_mesh(config: TrainConfig):
    mesh = parallel.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.micro_batch_size % split:
        raise ConfigError(f"micro-batch {config.micro_batch_size} (batch_size / accumulation_steps) does not split "
                          f"over data × fsdp = {split} devices")
    return mesh


def train(config: TrainConfig, task: Task, data, workdir: str | Path, resume: bool = False,
          stop_after: int | None = None, tensorboard: bool = True) -> TrainState:
    """Train to config.steps updates (or stop, with a save, after update `stop_after`)."""
    workdir = Path(workdir)
    mesh = make_run_mesh(config)
    local_rows = distributed.local_batch_size(config.micro_batch_size)
    accumulation = config.optimizer.accumulation_steps
    optimizer = make_optimizer(config.optimizer, config.steps)
    ema = config.ema_decay is not None
    shardings = state_shardings(task, optimizer, mesh, ema)
    checkpoints = Checkpointer(workdir / "checkpoints", config.checkpoint)

    state = None
    start = checkpoints.latest_step()
    if start is not None and not resume:
        checkpoints.close()
        raise ConfigError(f"{workdir} already holds checkpoints (latest: update {start}); pass --resume "
                          f"or choose another --workdir")
    if start is not None:
        state = checkpoints.restore(start, abstract_state(task, optimizer, config.seed, ema, shardings), data)
        if int(state.step) != start * accumulation:
            raise ConfigError(f"checkpoint {start} holds micro-step {int(state.step)}, expected {start * accumulation} "
                              f"(was optimizer.accumulation_steps changed?)")
    update = start or 0
    last = config.steps if stop_after is None else min(stop_after, config.steps)
    if update >= last:
        checkpoints.close()
        return state

    first = next(data)  # checked before anything compiles
    check_batch(task, first, local_rows)
    if state is None:
        state = create_state(task, optimizer, config.seed, ema, shardings)
        if config.init_from:
            state = start_from(task, config.init_from, state)
    step_fn = make_train_step(task, optimizer, learning_rate_schedule(config.optimizer, config.steps),
                              config.optimizer.accumulation_steps, config.ema_decay, shardings, mesh)
    writer = MetricsWriter(workdir, config.steps, enabled=distributed.is_main(), tensorboard=tensorboard)
    examples = config.batch_size
    peak = peak_flops(jax.devices()[0].device_kind)
    window_start, window_updates, data_wait = None, 0, 0.0
    try:
        with StopRequests() as stop:
            while update < last:
                for _ in range(accumulation):
                    waiting = time.perf_counter()
                    batch = first if first is not None else next(data)
                    data_wait += time.perf_counter() - waiting
                    first = None
                    batch = {name: batch[name] for name in task.example}  # a dataset may hold more fields
                    state, metrics = step_fn(state, distributed.global_batch(batch, mesh))
                update += 1
                window_updates += 1
                stopping = stop.requested(update)
                if update % config.log_every == 0 or update == last or stopping:
                    metrics = jax.device_get(metrics)
                    now = time.perf_counter()
                    if window_start is not None:
                        metrics.update(throughput((now - window_start) / window_updates, examples,
                                                  task.tokens_per_example, task.flops_per_example,
                                                  jax.device_count(), peak))
                        # the share of the window this host spent waiting for batches: near 1, the
                        # input pipeline (not the accelerator) sets the pace
                        metrics["data_wait"] = data_wait / (now - window_start)
                    writer.write(update, metrics)
                    window_start, window_updates, data_wait = now, 0, 0.0
                if update % config.checkpoint.every == 0 or update == last or stopping:
                    checkpoints.save(update, state, data, to_dict(config))
                if stopping and update < last:
                    checkpoints.wait()
                    raise Stopped(update, stopping)
        checkpoints.wait()
    finally:
        writer.close()
        checkpoints.close()
    return state
