"""Issue 19 item 3: `from_checkpoint` restores the components concurrently, one thread each
(`checkpoint.load_components`): the same arrays as one at a time; a damaged component is still
one error, stops compiling ahead, and leaves no thread running and nothing printed."""

import shutil
import sys
import threading
import time

import jax
import numpy as np
import pytest

from landiff_jax import checkpoint
from landiff_jax.cli import DEFAULT_CHECKPOINT
from landiff_jax.convert.io import CheckpointError
from landiff_jax.pipeline import COMPONENTS, CompileFor, LanDiff, abstract_params


def test_concurrent_restore_gives_the_arrays_of_one_at_a_time():
    pipe = LanDiff.from_checkpoint(DEFAULT_CHECKPOINT)
    assert pipe.restore_seconds > 0 and pipe.checks_seconds > 0 and pipe.compile_seconds is None  # nothing compiled
    trees = abstract_params(pipe.cfg)
    assert set(pipe.params) == set(trees)
    for name, tree in trees.items():
        alone = checkpoint.load_component(DEFAULT_CHECKPOINT, name, tree, shardings=pipe.shardings[name],
                                          dtype=COMPONENTS[name].config(pipe.cfg).param_dtype)
        assert jax.tree.structure(pipe.params[name]) == jax.tree.structure(alone), name
        for got, want in zip(jax.tree.leaves(pipe.params[name]), jax.tree.leaves(alone)):
            assert got.dtype == want.dtype and got.sharding == want.sharding
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_the_restores_run_at_once(monkeypatch):
    """Each restore waits for all the others to have started: only concurrent ones finish."""
    together = threading.Barrier(len(checkpoint.COMPONENTS), timeout=20)
    threads = set()

    def restore(directory, name):
        threads.add(threading.current_thread().name)
        together.wait()
        return name

    monkeypatch.setattr(checkpoint, "load_component", restore)
    loaded = checkpoint.load_components(DEFAULT_CHECKPOINT, {name: {} for name in checkpoint.COMPONENTS})
    assert list(loaded.items()) == [(name, name) for name in checkpoint.COMPONENTS]  # in the order asked
    assert len(threads) == len(checkpoint.COMPONENTS)


def test_the_first_failure_is_raised_after_the_others_finished(monkeypatch):
    finished, failed = [], threading.Event()

    def restore(directory, name):
        if name in ("vae", "lm"):
            time.sleep(0.0 if name == "vae" else 0.3)
            raise CheckpointError(f"component '{name}' is broken")
        time.sleep(0.5)
        finished.append(name)
        return name

    monkeypatch.setattr(checkpoint, "load_component", restore)
    before = threading.active_count()
    with pytest.raises(CheckpointError, match="^component 'vae' is broken$"):
        checkpoint.load_components(DEFAULT_CHECKPOINT, {name: {} for name in checkpoint.COMPONENTS}, failed=failed)
    assert failed.is_set()
    assert sorted(finished) == sorted(set(checkpoint.COMPONENTS) - {"vae", "lm"})
    assert threading.active_count() == before


def test_a_damaged_component_is_one_error_stops_compiling_and_leaves_no_thread(tmp_path, monkeypatch, capfd,
                                                                             quiet_mode):
    from absl import logging

    ckpt = shutil.copytree(DEFAULT_CHECKPOINT, tmp_path / "ckpt")
    for name in ("vae", "lm"):  # two damaged: one error
        data = max((p for p in (ckpt / "params" / name).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        data.write_bytes(data.read_bytes()[:-10])
    stopped = []
    monkeypatch.setattr(LanDiff, "compile", lambda self, plan, stop: stopped.append(stop.wait(30)))
    before, stderr = threading.active_count(), sys.stderr
    with pytest.raises(CheckpointError, match=r"^component '(vae|lm)' is corrupted .*bytes, \d+ were written") as e:
        LanDiff.from_checkpoint(ckpt, compile_for=CompileFor(["a fox"]))
    assert "\n" not in str(e.value)
    assert stopped == [True]
    assert threading.active_count() == before
    assert sys.stderr is stderr and not logging.get_absl_logger().filters  # the output held once, and let go
    assert capfd.readouterr().err == ""


def test_the_output_is_held_once_whichever_threads_enter_and_leave(quiet_mode, capfd):
    """`storage_output_held` changes process-wide state: threads entering it together, and leaving
    in another order than they came (a, b in; a out; b out), left sys.stderr redirected."""
    from absl import logging

    stderr, a_in, b_in, a_out = sys.stderr, threading.Event(), threading.Event(), threading.Event()

    def a():
        with checkpoint.storage_output_held():
            print("from a", file=sys.stderr)
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with checkpoint.storage_output_held():
            print("from b", file=sys.stderr)
            b_in.set()
            a_out.wait(10)

    threads = [threading.Thread(target=f) for f in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sys.stderr is stderr and not logging.get_absl_logger().filters
    assert capfd.readouterr().err.splitlines() == ["from a", "from b"]  # held, then shown on success
