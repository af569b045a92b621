"""The grain input pipeline: batches of examples from a dataset directory (`records`).

Order. The examples are shuffled globally by `seed`, every epoch differently (grain's
`shuffle` then `repeat`), giving one global sequence of positions. Global batch s is positions
[s·B, (s+1)·B); JAX process p of P reads the contiguous block p·b .. (p+1)·b - 1 of it
(b = B / P). Stacking the processes' batches in process order (as
`jax.make_array_from_process_local_data` does) therefore gives the same global batch for any
number of processes, and the processes never read the same example within an epoch.

State. `BatchIterator.get_state()` is a small JSON-able dict (grain's position plus the
settings it is valid for); `set_state()` refuses a state from other settings. Saved with the
training state and restored, the iterator continues exactly where it stopped. The position
counts global batches, so a state restores onto another number of processes too, and every
process holds the same state: save it once (orbax `args.JsonSave(iterator.get_state())`,
restored with `args.JsonRestore()`), not per process as grain's own handler does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np

from landiff_jax.data.records import RecordError, RecordSource

STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DataOptions:
    global_batch: int
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None  # None: repeat forever
    read_threads: int = 4  # threads that read and decode batches ahead
    prefetch_batches: int = 4  # batches read ahead per process
    # decode every example once into host memory and gather batches from it (same batches): for
    # datasets that fit, where reading and decoding each batch's records would pace the accelerator
    in_memory: bool = False

    def __post_init__(self):
        if not 0 <= self.seed < 2**32:
            raise RecordError(f"data seed must be in [0, 2**32), got {self.seed}")
        if self.num_epochs is not None and self.num_epochs < 1:
            raise RecordError(f"num_epochs must be >= 1 or None (forever), got {self.num_epochs}")
        if self.read_threads < 1 or self.prefetch_batches < 1:
            raise RecordError(f"read_threads and prefetch_batches must be >= 1, got {self.read_threads} "
                              f"and {self.prefetch_batches}")


def _stack(examples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.stack([e[name] for e in examples]) for name in examples[0]}


def _process_blocks(order: grain.MapDataset, options: DataOptions, process_index: int, process_count: int,
                    where: str) -> grain.MapDataset:
    """The per-process index blocks ([b] example ids) of every global batch, in step order."""
    if options.global_batch < 1 or options.global_batch % process_count:
        raise RecordError(f"{where}: global batch {options.global_batch} must be a positive multiple of "
                          f"the {process_count} processes")
    if not 0 <= process_index < process_count:
        raise RecordError(f"process index {process_index} is not in [0, {process_count})")
    local = options.global_batch // process_count
    blocks = order.batch(local, drop_remainder=True)  # block k = positions k·b .. (k+1)·b - 1
    steps = len(blocks) // process_count  # whole global batches only
    if steps == 0:
        raise RecordError(f"{where}: {len(order)} examples over {options.num_epochs} epoch(s) make no "
                          f"global batch of {options.global_batch}")
    return blocks.slice(slice(process_index, steps * process_count, process_count))


def batches(path: str | os.PathLike, options: DataOptions, process_index: int | None = None,
            process_count: int | None = None) -> BatchIterator:
    """This process's batches ({field: [b, ...]} numpy, b = global_batch / process_count) of the
    dataset at `path`. The process index and count default to JAX's."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    source = RecordSource(path)
    order = grain.MapDataset.range(len(source))
    if options.shuffle:
        order = order.shuffle(seed=options.seed)
    order = order.repeat(options.num_epochs)
    blocks = _process_blocks(order, options, process_index, process_count, str(path))
    if options.in_memory:
        table = _stack([source[i] for i in range(len(source))])  # {field: [N, ...]}
        dataset = blocks.map(lambda ids: {name: column[np.asarray(ids)] for name, column in table.items()})
    else:
        dataset = blocks.map(lambda ids: _stack([source[int(i)] for i in ids]))
    read = grain.ReadOptions(num_threads=options.read_threads, prefetch_buffer_size=options.prefetch_batches)
    # what decides the order; not how it is read, nor the process count (state = global steps done)
    fingerprint = {"path": os.path.abspath(path), "num_examples": len(source), **dataclasses.asdict(options)}
    for how in ("read_threads", "prefetch_batches", "in_memory"):
        fingerprint.pop(how)
    return BatchIterator(dataset.to_iter_dataset(read), fingerprint, len(blocks))


class BatchIterator(Iterator[dict[str, np.ndarray]]):
    def __init__(self, dataset: grain.IterDataset, fingerprint: dict[str, Any], steps: int):
        self._iterator = iter(dataset)
        self._fingerprint = fingerprint
        self.steps = steps  # batches this iterator yields in all (huge when repeating forever)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._iterator)

    def close(self) -> None:
        """Stop the read-ahead threads."""
        self._iterator.close()

    def get_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "pipeline": dict(self._fingerprint), "grain": self._iterator.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise RecordError(f"data iterator state of version {state.get('version')!r}, expected {STATE_VERSION}")
        saved = state.get("pipeline", {})
        changed = sorted(k for k in set(saved) | set(self._fingerprint)
                         if k != "path" and saved.get(k) != self._fingerprint.get(k))
        if changed:
            diffs = ", ".join(f"{k}: saved {saved.get(k)!r}, now {self._fingerprint.get(k)!r}" for k in changed)
            raise RecordError(f"the data iterator state was saved with other settings ({diffs})")
        self._iterator.set_state(state["grain"])
