"""Found by tools/fault_sweep.py (issue 13): a write refused by a file-size limit (EFBIG,
`ulimit -f`, the sweep's full disk where no tmpfs can be mounted) is one line naming the cause and
keeps what was there, like a full disk. A conversion's was a traceback, and the write's operations
still in flight printed ~110 lines of "Event loop is closed" tracebacks after orbax gave up: a
failed storage write now waits for them to go quiet (`checkpoint.storage_output_held`)."""

import errno
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import E2E_CASE

REPO = Path(__file__).resolve().parents[2]
LIMIT = 16 * 1024


def limited(*command):
    """`command` with RLIMIT_FSIZE = LIMIT (its writes beyond it fail with EFBIG)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, *command], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT)))


WRITE_VIDEO = """
import sys, numpy as np
from pathlib import Path
from landiff_jax.video_io import write_mp4
noise = np.random.default_rng(0).integers(0, 255, (10, 64, 64, 3), dtype=np.uint8)
write_mp4(Path(sys.argv[1]), noise)
"""


def test_a_limited_video_write_keeps_the_old_video(tmp_path):
    from landiff_jax.video_io import write_mp4

    good = write_mp4(tmp_path / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8))
    before = good.read_bytes()
    video = limited("-c", WRITE_VIDEO, str(good))
    _, err = video.communicate(timeout=120)
    assert video.returncode == 1, err[-2000:]
    assert "(killed by SIGXFSZ: the file exceeds the file-size limit (ulimit -f))" in err.splitlines()[-1], err[-2000:]
    assert good.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_late_output_of_a_failed_write_is_held_too(capfd, quiet_mode):
    from landiff_jax.checkpoint import storage_output_held

    def late():  # an operation still in flight, reporting after the write failed
        time.sleep(0.3)
        print("Traceback (most recent call last):\nRuntimeError: Event loop is closed", file=sys.stderr)

    with pytest.raises(OSError):
        with storage_output_held():
            threading.Thread(target=late).start()
            raise OSError(errno.EFBIG, "File too large")
    assert capfd.readouterr().err == ""


def test_refused_writes_are_named_through_the_exception_chain():
    from landiff_jax.release import _write_refused

    def chained(inner):  # tensorstore's error as orbax re-raises it
        try:
            raise inner
        except Exception as e:
            try:
                raise ValueError("orbax: write failed") from e
            except ValueError as outer:
                return outer

    limit = "a file exceeds the file system's or the process's file-size limit (ulimit -f)"
    assert _write_refused(chained(OSError(errno.EFBIG, "File too large"))) == limit
    assert _write_refused(chained(RuntimeError("UNKNOWN: ... File too large [source ...]"))) == limit
    full = chained(RuntimeError("RESOURCE_EXHAUSTED: No space left on device"))
    assert _write_refused(full) == "no space left on device"
    assert _write_refused(chained(RuntimeError("something else"))) is None


@pytest.mark.slow
def test_a_limited_conversion_is_one_line(fixtures_dir, tmp_path):
    case = fixtures_dir / E2E_CASE
    conversion = limited(str(REPO / "tools" / "convert.py"), "--release", str(case / "ckpts/LanDiff"), "--flan_t5",
                         str(case / "flan-t5"), "--original_config", str(case / "meta.json"), "--noverify",
                         "--out", str(tmp_path / "out"))
    _, err = conversion.communicate(timeout=300)
    assert conversion.returncode == 1, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"convert.py: error: a file exceeds the file system's or the process's file-size limit (ulimit -f) writing "
        f"{tmp_path / 'out'} (") and lines[0].endswith("; nothing was written"), err[-3000:]
    assert list(tmp_path.iterdir()) == []  # no temporary, no lock
