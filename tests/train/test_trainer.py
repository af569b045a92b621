"""The trainer on a toy task (tests/train/toy.py): resume equivalence (bitwise), interrupted
saves, the learning-rate schedule, gradient accumulation, and sharded / multi-device /
multi-process runs equal to one device (subprocesses: the device count is fixed at jax import)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy  # noqa: E402

from landiff_jax.train import loop  # noqa: E402
from landiff_jax.train.checkpointing import Checkpointer  # noqa: E402
from landiff_jax.train.optimizer import learning_rate_schedule, make_optimizer  # noqa: E402
from landiff_jax.train.preemption import Stopped, StopRequests  # noqa: E402
from landiff_jax.train.step import abstract_state, state_shardings  # noqa: E402

STEPS = 4
SCRIPT = Path(toy.__file__)


def run_toy(workdir, **kw):
    cfg = toy.config(**{"steps": STEPS, **{k: v for k, v in kw.items() if k in ("steps", "accumulation", "mesh")}})
    data = toy.ArraySource(cfg.micro_batch_size)
    state = loop.train(cfg, toy.TASK, data, workdir, resume=kw.get("resume", False),
                       stop_after=kw.get("stop_after"), tensorboard=kw.get("tensorboard", False))
    return state, data


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    state, data = run_toy(workdir, tensorboard=True)
    return workdir, toy.flat(jax.device_get(state.as_dict())), data.seen


def test_resume_is_bitwise_equal(straight, tmp_path):
    _, final, seen = straight
    _, first = run_toy(tmp_path, stop_after=2)
    assert Checkpointer(tmp_path / "checkpoints", toy.config().checkpoint).all_steps() == [2]
    state, second = run_toy(tmp_path, resume=True)
    resumed = toy.flat(jax.device_get(state.as_dict()))
    assert resumed.keys() == final.keys() and any("opt_state" in k for k in final) and any("rng" in k for k in final)
    for name in final:
        np.testing.assert_array_equal(resumed[name], final[name], err_msg=name)
    assert first.seen + second.seen == seen  # the same examples in the same order


def test_outputs_of_a_run(straight):
    workdir, final, _ = straight
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == STEPS and '"grad_norm"' in lines[-1] and '"examples_per_s"' in lines[-1]
    assert 0 <= json.loads(lines[-1])["data_wait"] <= 1
    assert list((workdir / "tb").glob("events.out.tfevents.*"))
    assert final["['step']"] == STEPS
    # the frozen params never move; the EMA differs from the params it follows
    init_frozen = jax.jit(toy.init)(jax.random.split(jax.random.PRNGKey(toy.config().seed))[0])[1]
    np.testing.assert_array_equal(final["['frozen']['proj']"], init_frozen["proj"])
    assert not np.allclose(final["['ema']['Dense_0']['kernel']"], final["['trainable']['Dense_0']['kernel']"])


def test_interrupted_save_is_never_resumed(straight, tmp_path):
    workdir, _, _ = straight
    shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
    # what a save killed mid-way leaves: orbax's temporary directory (renamed only when complete)
    partial = tmp_path / "checkpoints" / f"{STEPS + 2}.orbax-checkpoint-tmp-1234"
    shutil.copytree(workdir / "checkpoints" / str(STEPS), partial)
    shutil.rmtree(partial / "state")
    assert Checkpointer(tmp_path / "checkpoints", toy.config().checkpoint).latest_step() == STEPS


def test_save_killed_midway_is_never_resumed(straight, tmp_path):
    _, final, seen = straight
    proc = _run([str(tmp_path), "--steps", str(STEPS), "--hang_in_save", "2"], devices=1)
    deadline = time.monotonic() + 240
    lines = []
    for line in proc.stdout:  # until the second save (update 4) is under way
        lines.append(line)
        if line.startswith("IN_SAVE") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert lines and lines[-1].startswith("IN_SAVE"), "".join(lines)[-3000:]
    checkpoints = tmp_path / "checkpoints"
    assert [p.name for p in checkpoints.iterdir() if p.name.startswith(f"{STEPS}.")]  # the killed save's leftovers
    assert Checkpointer(checkpoints, toy.config().checkpoint).latest_step() == 2
    state, data = run_toy(tmp_path, resume=True)
    resumed = toy.flat(jax.device_get(state.as_dict()))
    for name in final:
        np.testing.assert_array_equal(resumed[name], final[name], err_msg=name)
    assert data.seen == seen[2:]


def test_learning_rate_schedule():
    cfg = toy.config(steps=10).optimizer  # peak 1e-2, 2 warm-up updates, cosine to 0.1×
    lr = learning_rate_schedule(cfg, 10)
    assert float(lr(1)) == pytest.approx(5e-3)
    assert float(lr(2)) == pytest.approx(1e-2)
    mid = 1e-2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert float(lr(6)) == pytest.approx(mid, rel=1e-5)
    assert float(lr(10)) == pytest.approx(1e-3, rel=1e-5)


def test_gradient_accumulation_updates_every_k(tmp_path):
    state, data = run_toy(tmp_path, accumulation=2, stop_after=1)
    assert int(state.step) == 2 and len(data.seen) == 2 and int(state.opt_state.gradient_step) == 1


def _run(args, devices: int, timeout: int = 240, **popen):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags, "PYTHONPATH": str(SCRIPT.parents[2])}
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def _finish(proc, timeout: int = 240, returncode: int = 0) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"subprocess timed out:\n{out[-3000:]}")
    assert proc.returncode == returncode, out[-3000:]
    return out


def _assert_close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=2e-5, atol=2e-6, err_msg=name)


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fsdp8")
    out = _finish(_run([str(workdir), "--steps", str(STEPS), "--mesh", "2,4"], devices=8))
    return workdir, out


def test_fsdp_on_8_devices_equals_one(straight, fsdp_run):
    _, final, _ = straight
    workdir, out = fsdp_run
    assert "SHARDING PartitionSpec('fsdp', 'tensor') DEVICES 8" in out or "SHARDING P('fsdp', 'tensor') DEVICES 8" in out
    _assert_close(dict(np.load(workdir / "final.npz")), final)


def test_checkpoint_of_8_devices_restores_on_one(fsdp_run):
    workdir, _ = fsdp_run
    cfg = toy.config(steps=STEPS)
    mesh = loop.make_run_mesh(cfg)
    optimizer = make_optimizer(cfg.optimizer, cfg.steps)
    shardings = state_shardings(toy.TASK, optimizer, mesh, ema=True)
    data = toy.ArraySource(cfg.micro_batch_size)
    ckpt = Checkpointer(workdir / "checkpoints", cfg.checkpoint)
    state = ckpt.restore(STEPS, abstract_state(toy.TASK, optimizer, cfg.seed, True, shardings), data)
    assert len(state.trainable["Dense_0"]["kernel"].sharding.device_set) == 1
    restored = toy.flat(jax.device_get(state.as_dict()))
    saved = dict(np.load(workdir / "final.npz"))
    for name in saved:
        np.testing.assert_array_equal(restored[name], saved[name], err_msg=name)
    assert data.position == STEPS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(straight, tmp_path):
    _, final, _ = straight
    coordinator = f"localhost:{_free_port()}"
    procs = [_run([str(tmp_path), "--steps", str(STEPS), "--mesh", "2,2", "--coordinator", coordinator,
                   "--num_processes", "2", "--process_id", str(i)], devices=2) for i in range(2)]
    outs = [_finish(p) for p in procs]
    assert all("DEVICES 4" in o for o in outs)
    _assert_close(dict(np.load(tmp_path / "final.npz")), final)
    assert sorted(p.name for p in (tmp_path / "checkpoints" / str(STEPS) / "data").glob("*.json")) == [
        "process_0-of-2.json", "process_1-of-2.json"]


def test_stop_requests_on_signals():
    """One process: the first SIGTERM or Ctrl-C asks for a stop; a repeated SIGTERM changes
    nothing; a second Ctrl-C stops at once. The handlers are put back afterwards."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopRequests() as stop:
        assert stop.requested(1) is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested(2) == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested(3) == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested(1) == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_sigterm_saves_the_update_and_resuming_equals_not_stopping(straight, tmp_path):
    _, final, seen = straight
    cfg = toy.config(steps=STEPS)
    data = toy.ArraySource(cfg.micro_batch_size, signal_at=2)  # SIGTERM while reading update 3's batch
    with pytest.raises(Stopped, match="stopped by SIGTERM after update 3; its checkpoint is saved") as stopped:
        loop.train(cfg, toy.TASK, data, tmp_path, tensorboard=False)
    assert stopped.value.update == 3 and stopped.value.exit_code == 143
    assert Checkpointer(tmp_path / "checkpoints", cfg.checkpoint).latest_step() == 3  # not a multiple of every=2
    state, second = run_toy(tmp_path, resume=True)
    resumed = toy.flat(jax.device_get(state.as_dict()))
    for name in final:
        np.testing.assert_array_equal(resumed[name], final[name], err_msg=name)
    assert data.seen + second.seen == seen


def test_sigterm_to_one_of_two_processes_stops_both_at_one_update(tmp_path):
    """jax's preemption sync point: process 1 alone gets SIGTERM; both save the same update (a
    few updates later: the notice travels through the coordination service) and stop; two
    processes resume to the result of never stopping."""
    steps = 40  # room for the notice to arrive before the end
    state, _ = run_toy(tmp_path / "straight", steps=steps)
    final = toy.flat(jax.device_get(state.as_dict()))
    workdir = tmp_path / "stopped"

    def run_two(args_of_process, returncode=0):
        common = ["--steps", str(steps), "--mesh", "2,2", "--coordinator", f"localhost:{_free_port()}",
                  "--num_processes", "2"]
        procs = [_run([str(workdir), *common, "--process_id", str(i), *args_of_process[i]], devices=2)
                 for i in range(2)]
        return [_finish(p, returncode=returncode) for p in procs]

    outs = run_two([[], ["--signal_at", "1"]], returncode=143)
    stops = {line for out in outs for line in out.splitlines() if line.startswith("STOPPED")}
    assert len(stops) == 1, stops
    stopped = int(stops.pop().split()[1])
    assert 2 <= stopped < steps
    assert Checkpointer(workdir / "checkpoints", toy.config().checkpoint).latest_step() == stopped
    run_two([["--resume"], ["--resume"]])
    _assert_close(dict(np.load(workdir / "final.npz")), final)
