"""Multi-process start-up and per-process batches.

One process per host (or per GPU); `initialize` calls jax.distributed.initialize with the
coordinator address, process count and id from flags or, when not given, from the environment
(JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID); with none of them and one
process it does nothing. On TPU pods and SLURM jax finds all three itself (pass `auto=True`).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh

from landiff_jax import parallel
from landiff_jax.config_file import ConfigError


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               auto: bool = False) -> None:
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if auto:
        jax.distributed.initialize()
    elif coordinator is not None or (num_processes or 1) > 1:
        if coordinator is None or num_processes is None or process_id is None:
            raise ConfigError("multi-process training needs the coordinator address, process count and process id")
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def is_main() -> bool:
    """Process 0 writes logs and checkpoint metadata."""
    return jax.process_index() == 0


def local_batch_size(global_batch: int) -> int:
    if global_batch % jax.process_count():
        raise ConfigError(f"batch size {global_batch} does not split over {jax.process_count()} processes")
    return global_batch // jax.process_count()


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows of every field → global arrays split over (data, fsdp); the global
    batch is the processes' rows in process order."""
    out = {}
    for name, rows in local.items():
        rows = np.asarray(rows)
        shape = (rows.shape[0] * jax.process_count(), *rows.shape[1:])
        out[name] = jax.make_array_from_process_local_data(parallel.batch_sharding(mesh, rows.ndim), rows, shape)
    return out
