"""Grain pipeline: order by seed, per-process blocks of each global batch, exact resume."""

import json

import numpy as np
import pytest

from landiff_jax.data import records
from landiff_jax.data.pipeline import DataOptions, batches

N = 12  # examples; a global batch of 4 makes 3 steps per epoch


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Example i carries its id (and a vector derived from it) so that orders can be read back."""
    schema = {"id": records.Field((), "int32"), "x": records.Field((3,), "float32")}
    info = records.DatasetInfo("test", schema, records.plan_shards("test", N, 5))
    make = lambda start, count: [{"id": np.int32(i), "x": np.full(3, i, np.float32)}  # noqa: E731
                                 for i in range(start, start + count)]
    path = tmp_path_factory.mktemp("data") / "ds"
    records.write_dataset(path, info, make)
    return path


def ids(iterator, steps):
    out = []
    for _ in range(steps):
        batch = next(iterator)
        np.testing.assert_array_equal(batch["x"], np.repeat(batch["id"][:, None].astype(np.float32), 3, axis=1))
        out.append(batch["id"].tolist())
    return out


def test_epochs_are_permutations_and_order_follows_seed(dataset):
    options = DataOptions(global_batch=4, seed=7, num_epochs=3)
    it = batches(dataset, options)
    assert it.steps == 9
    order = ids(it, 9)
    with pytest.raises(StopIteration):
        next(it)
    flat = sum(order, [])
    epochs = [flat[k * N:(k + 1) * N] for k in range(3)]
    assert all(sorted(e) == list(range(N)) for e in epochs)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(N))  # reshuffled every epoch
    assert ids(batches(dataset, options), 9) == order
    assert ids(batches(dataset, DataOptions(global_batch=4, seed=8, num_epochs=3)), 9) != order
    assert sum(ids(batches(dataset, DataOptions(global_batch=4, shuffle=False, num_epochs=1)), 3), []) == list(range(N))


def test_two_processes_split_each_global_batch(dataset):
    options = DataOptions(global_batch=4, seed=1, num_epochs=2)
    whole = ids(batches(dataset, options), 6)
    halves = [ids(batches(dataset, options, process_index=p, process_count=2), 6) for p in range(2)]
    for step in range(6):
        assert halves[0][step] + halves[1][step] == whole[step]  # process order = the 1-process batch
        assert len(halves[0][step]) == 2
    first_epoch = [sum(h[:3], []) for h in halves]
    assert not set(first_epoch[0]) & set(first_epoch[1])
    assert sorted(first_epoch[0] + first_epoch[1]) == list(range(N))


def test_state_round_trip_mid_epoch(dataset):
    options = DataOptions(global_batch=4, seed=3)  # repeats forever
    straight = ids(batches(dataset, options), 8)
    it = batches(dataset, options)
    assert ids(it, 4) == straight[:4]  # stop mid-epoch 2
    state = json.loads(json.dumps(it.get_state()))
    resumed = batches(dataset, options)
    resumed.set_state(state)
    assert ids(resumed, 4) == straight[4:]
    # the position counts global batches: the state restores onto two processes as well
    halves = []
    for p in range(2):
        part = batches(dataset, options, process_index=p, process_count=2)
        part.set_state(state)
        halves.append(ids(part, 4))
    assert [a + b for a, b in zip(*halves)] == straight[4:]


def test_state_from_other_settings_is_refused(dataset):
    it = batches(dataset, DataOptions(global_batch=4, seed=3))
    next(it)
    other = batches(dataset, DataOptions(global_batch=4, seed=4))
    with pytest.raises(records.RecordError, match="other settings \\(seed: saved 3, now 4\\)"):
        other.set_state(it.get_state())


def test_bad_batch_settings(dataset):
    with pytest.raises(records.RecordError, match="global batch 5 must be a positive multiple of the 2 processes"):
        batches(dataset, DataOptions(global_batch=5), process_index=0, process_count=2)
    with pytest.raises(records.RecordError, match="make no global batch of 16"):
        batches(dataset, DataOptions(global_batch=16, num_epochs=1))
    with pytest.raises(records.RecordError, match="process index 2 is not in"):
        batches(dataset, DataOptions(global_batch=4), process_index=2, process_count=2)
    with pytest.raises(records.RecordError, match="data seed must be in"):
        DataOptions(global_batch=4, seed=-1)


def test_in_memory_gives_the_same_batches_and_states(dataset):
    """Reading from the decoded dataset in host memory changes how batches are read, not which:
    the same batches per process, and states that restore across the two ways of reading."""
    options = DataOptions(global_batch=4, seed=5)
    held = DataOptions(global_batch=4, seed=5, in_memory=True)
    straight = ids(batches(dataset, options), 8)
    assert ids(batches(dataset, held), 8) == straight
    for p in range(2):
        assert ids(batches(dataset, held, process_index=p, process_count=2), 8) == \
            ids(batches(dataset, options, process_index=p, process_count=2), 8)
    it = batches(dataset, options)
    ids(it, 3)
    resumed = batches(dataset, held)
    resumed.set_state(it.get_state())
    assert ids(resumed, 5) == straight[3:]
