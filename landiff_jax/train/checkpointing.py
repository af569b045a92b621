"""Training checkpoints: an orbax CheckpointManager over `<workdir>/checkpoints/<update>/`
with three items per step:

    state/   the TrainState (orbax StandardSave: every process writes its shards)
    data/    the data iterator's state, one `process_<i>-of-<n>.json` per process (grain's handler)
    config/  the resolved TrainConfig as JSON (written by process 0)

Saves are asynchronous; orbax writes each step to a temporary directory and renames it when
every item is complete, so a save killed mid-way leaves no step that `latest_step` reports.
Restoring reads into the shardings of the current mesh, whatever mesh wrote the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grain.checkpoint
import orbax.checkpoint as ocp

from landiff_jax.train.config import CheckpointConfig
from landiff_jax.train.state import TrainState


class DataState:
    """Bridges an iterator with get_state()/set_state() (a JSON-able dict, or bytes as grain's
    DataLoader iterators give) to grain's orbax handler, which stores text."""

    def __init__(self, iterator):
        self.iterator = iterator
        state = iterator.get_state()
        self._text = state if isinstance(state, bytes) else json.dumps(state).encode()
        self._raw = isinstance(state, bytes)

    def get_state(self) -> bytes:  # the state when this bridge was made (the save's step)
        return self._text

    def set_state(self, text: bytes) -> None:
        self.iterator.set_state(text if self._raw else json.loads(text.decode()))

    def start_prefetch(self) -> None:
        if hasattr(self.iterator, "start_prefetch"):
            self.iterator.start_prefetch()


class Checkpointer:
    def __init__(self, directory: str | Path, cfg: CheckpointConfig):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=cfg.keep_last, keep_period=cfg.keep_every, create=True,
            enable_async_checkpointing=cfg.async_save,
        )
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options,
                                             item_names=("state", "data", "config"))

    def latest_step(self) -> int | None:
        """The newest complete step (incomplete, interrupted saves are not listed)."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: TrainState, iterator, config: dict[str, Any]) -> None:
        config = json.loads(json.dumps(config, default=str))  # dtypes and the like as text
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state.as_dict()),
            data=grain.checkpoint.CheckpointSave(DataState(iterator)),
            config=ocp.args.JsonSave(config),
        ), force=True)

    def restore(self, step: int, target: TrainState, iterator) -> TrainState:
        """The state at `step` read into target's shapes and shardings (ShapeDtypeStructs);
        `iterator` is set to its state at that step."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target.as_dict()),
            data=grain.checkpoint.CheckpointRestore(DataState(iterator)),
        ))
        return TrainState.from_dict(dict(restored["state"]))

    def config(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()



def read_state(directory: str | Path, step: int | None = None) -> dict[str, Any]:
    """The TrainState dict saved at `step` (default: the newest complete one) under a run's
    `checkpoints/` directory, as host numpy arrays, without a target (restored as saved, on
    this process's devices): what a run hands on (params, EMA, model_state) to the next stage
    or to a converted checkpoint."""
    import jax

    directory = Path(directory).absolute()
    manager = ocp.CheckpointManager(directory, item_names=("state", "data", "config"))
    try:
        step = manager.latest_step() if step is None else step
    finally:
        manager.close()
    if step is None:
        raise FileNotFoundError(f"{directory}: no complete training checkpoint")
    return jax.device_get(ocp.StandardCheckpointer().restore(directory / str(step) / "state"))
