"""Found by tools/fault_sweep.py (issue 13): a SIGTERM that reached generate.py while ffmpeg was
being started (inside `subprocess.Popen`, before the stream held its handle) left the video's
temporary behind and ffmpeg running unknown to `abort`. `files.signals_deferred` holds SIGINT and
SIGTERM until such a step is complete. The reader had the same window (CI caught a SIGINT
that landed while its ffmpeg was starting)."""

import os
import signal
import subprocess

import numpy as np
import pytest

from landiff_jax import files
from landiff_jax.video_io import Mp4Stream, read_mp4, write_mp4


@pytest.fixture
def sigterm_exits():
    """SIGTERM raises SystemExit(143) in this process (as in every tool), restored afterwards."""
    previous = signal.getsignal(signal.SIGTERM)
    files.exit_on_sigterm()
    yield
    signal.signal(signal.SIGTERM, previous)


def signal_inside(call, signum):
    """`call` with `signum` sent to this process just before it returns (Python runs the handler at
    the next bytecode, still inside), as a signal arriving mid-call would act."""
    def wrapped(*args, **kwargs):
        result = call(*args, **kwargs)
        started.append(result)
        os.kill(os.getpid(), signum)
        sum(range(10_000))  # the handler runs here, before `result` is returned
        return result
    started = []
    return wrapped, started


def test_sigterm_while_ffmpeg_starts_stops_it_and_leaves_nothing(tmp_path, monkeypatch, sigterm_exits):
    popen, started = signal_inside(subprocess.Popen, signal.SIGTERM)
    monkeypatch.setattr(subprocess, "Popen", popen)
    try:
        with pytest.raises(SystemExit) as exit_:
            with Mp4Stream(tmp_path / "v.mp4") as stream:
                stream.write(np.zeros((2, 16, 16, 3), np.uint8))
        assert exit_.value.code == 143
        assert started and started[0].poll() is not None  # ffmpeg was stopped by abort()
        assert list(tmp_path.iterdir()) == []
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


@pytest.fixture
def sigint_interrupts():
    """SIGINT raises KeyboardInterrupt, as in a tool (a pytest-xdist worker ignores it), restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_deferred_signals_act_at_the_end_as_before(sigterm_exits, sigint_interrupts):
    steps = []
    with pytest.raises(SystemExit):
        with files.signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10_000))
            steps.append("finished")
    assert steps == ["finished"]
    with pytest.raises(KeyboardInterrupt):
        with files.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10_000))
            steps.append("again")
    assert steps == ["finished", "again"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigint_while_the_reader_starts_ffmpeg_stops_it(tmp_path, monkeypatch, sigint_interrupts):
    video = write_mp4(tmp_path / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=8)
    popen, started = signal_inside(subprocess.Popen, signal.SIGINT)
    monkeypatch.setattr(subprocess, "Popen", popen)
    try:
        with pytest.raises(KeyboardInterrupt):
            read_mp4(video, size=(16, 16))
        assert started and started[0].poll() is not None  # ffmpeg was stopped by the reader's `finally`
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
