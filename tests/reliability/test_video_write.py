"""Item 1 of issue 13: a failed video write is an error and never replaces a good file; the
video and its codes are one unit; SIGTERM leaves no temporary and no ffmpeg behind. Issue 17:
the same for a video written as its chunks arrive (streaming generation)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from landiff_jax.video_io import (
    Mp4Stream,
    VideoWriteError,
    commit_with_codes,
    read_mp4,
    video_paths,
    write_mp4,
    write_video_and_codes,
)
from tests.reliability.conftest import processes_mentioning

REPO = Path(__file__).resolve().parents[2]


def test_full_disk_keeps_the_old_video(small_disk):
    good = write_mp4(small_disk / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8))
    before = good.read_bytes()
    noise = np.random.default_rng(0).integers(0, 255, (60, 96, 96, 3), dtype=np.uint8)  # ~0.6 MB at crf 10
    with pytest.raises(OSError):
        write_mp4(good, noise)
    assert good.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["v.mp4"]


def test_non_finite_video_is_refused(tmp_path):
    video = np.full((2, 8, 8, 3), 0.5, np.float32)
    video[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        write_mp4(tmp_path / "v.mp4", video)
    assert list(tmp_path.iterdir()) == []


def test_encoder_failure_is_an_error(tmp_path):
    with pytest.raises(VideoWriteError, match="ffmpeg failed"):  # libx264 + yuv420p refuse odd sizes
        write_mp4(tmp_path / "v.mp4", np.zeros((2, 15, 15, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_video_and_codes_numbered_or_overwritten(tmp_path):
    video = np.zeros((3, 16, 16, 3), np.uint8)
    first = write_video_and_codes(tmp_path, "a", video, np.arange(4))
    second = write_video_and_codes(tmp_path, "a", video + 200, np.arange(5))
    assert [p.name for p in first + second] == ["a.mp4", "a.npy", "a-1.mp4", "a-1.npy"]
    assert np.load(first[1]).shape == (4,) and np.load(second[1]).shape == (5,)
    again = write_video_and_codes(tmp_path, "a", video + 100, np.arange(6), overwrite=True)
    assert again == first and np.load(first[1]).shape == (6,)
    assert int(read_mp4(first[0]).mean()) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-1.mp4", "a-1.npy", "a.mp4", "a.npy"]


WRITER = """
import sys, numpy as np
from pathlib import Path
from landiff_jax.files import exit_on_sigterm
from landiff_jax.video_io import write_mp4
exit_on_sigterm()
video = np.random.default_rng(0).integers(0, 255, (400, 256, 256, 3), dtype=np.uint8)
print("encoding", flush=True)
write_mp4(Path(sys.argv[1]) / "v.mp4", video)
"""


def test_sigterm_removes_temporaries_and_stops_ffmpeg(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "encoding"
    for _ in range(100):  # until ffmpeg runs
        if processes_mentioning(str(out)):
            break
        time.sleep(0.05)
    assert processes_mentioning(str(out)), "ffmpeg never started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    time.sleep(0.2)
    assert processes_mentioning(str(out)) == []
    assert not out.exists() or list(out.iterdir()) == []  # no temporary left behind


def test_no_fork_warning_with_jax_running(tmp_path):
    import warnings

    import jax.numpy as jnp

    jnp.ones(3).block_until_ready()  # JAX's backend (and its threads) are up: a fork would warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_video_and_codes(tmp_path, "v", np.zeros((2, 16, 16, 3), np.uint8), np.arange(3))
    assert not [w for w in caught if "fork" in str(w.message)], [str(w.message) for w in caught]


def test_stream_writes_chunks_as_they_come_then_commits_with_codes(tmp_path):
    mp4, npy = video_paths(tmp_path, "s")
    with Mp4Stream(mp4) as stream:
        for value, frames in ((40, 9), (120, 8), (200, 8)):
            stream.write(np.full((frames, 16, 16, 3), value, np.uint8))
            assert not mp4.exists()
        commit_with_codes(stream.finish(), mp4, npy, np.arange(7))
    video = read_mp4(mp4)
    assert video.shape == (25, 16, 16, 3)
    assert [round(float(video[i].mean()) / 40) for i in (0, 12, 24)] == [1, 3, 5]
    assert np.load(npy).shape == (7,)
    with Mp4Stream(mp4) as stream:  # commit(): onto the final name, replacing the old video
        stream.write(np.zeros((3, 16, 16, 3), np.uint8))
        assert stream.commit() == mp4
    assert read_mp4(mp4).shape[0] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4", "s.npy"]


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_stream_leaves_nothing_at_the_final_path(tmp_path, existing):
    path = tmp_path / "v.mp4"
    before = write_mp4(path, np.zeros((2, 16, 16, 3), np.uint8)).read_bytes() if existing else None
    with pytest.raises(KeyboardInterrupt):
        with Mp4Stream(path) as stream:
            stream.write(np.zeros((9, 16, 16, 3), np.uint8))
            stream.write(np.zeros((8, 16, 16, 3), np.uint8))
            raise KeyboardInterrupt  # Ctrl-C between two chunks
    assert stream.proc.poll() is not None  # ffmpeg stopped
    assert sorted(p.name for p in tmp_path.iterdir()) == (["v.mp4"] if existing else [])
    if existing:
        assert path.read_bytes() == before


STREAM_WRITER = """
import sys, time, numpy as np
from pathlib import Path
from landiff_jax.files import exit_on_sigterm
from landiff_jax.video_io import Mp4Stream
exit_on_sigterm()
with Mp4Stream(Path(sys.argv[1]) / "v.mp4") as stream:
    while True:  # chunks keep coming until the signal
        stream.write(np.zeros((8, 64, 64, 3), np.uint8))
        print("chunk", flush=True)
        time.sleep(0.05)
"""


def test_sigterm_mid_stream_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", STREAM_WRITER, str(out)], stdout=subprocess.PIPE, text=True,
                            env=env)
    for _ in range(2):
        assert proc.stdout.readline().strip() == "chunk"
    assert processes_mentioning(str(out)), "ffmpeg is not running"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    time.sleep(0.2)
    assert processes_mentioning(str(out)) == []
    assert list(out.iterdir()) == []


def test_next_run_removes_stale_temporaries_of_dead_writers_only(tmp_path):
    from landiff_jax import files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid whose process is gone
    old = files.STARTED - 60
    names = {
        f".a.mp4{files.TMP_MARK}{dead}-k3x9_q1z.mp4": True,  # a killed run's video and codes
        f".a.npy{files.TMP_MARK}{dead}-p0w2e8rr.npy": True,
        ".b.mp4.tmp-zq81xwdu.mp4": True,  # written before pids were in the names
        f".c.mp4{files.TMP_MARK}{os.getpid()}-abcdefgh.mp4": False,  # a live writer's
        f".d.txt{files.TMP_MARK}{dead}-abcdefgh.txt": False,  # not a suffix of the tool's
        ".e.mp4.tmp-Mine.mp4": False, "e.mp4": False, ".e.mp4": False, "notes.tmp-1-x.mp4": False,  # user files
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (old, old))
    fresh = tmp_path / f".f.mp4{files.TMP_MARK}{dead}-abcdefgh.mp4"  # newer than this process: not judged stale
    fresh.write_bytes(b"x")
    removed = files.remove_stale_temporaries(tmp_path, (".mp4", ".npy"))
    assert sorted(p.name for p in removed) == sorted(n for n, stale in names.items() if stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name] + [n for n, s in names.items() if not s])
    assert files.remove_stale_temporaries(tmp_path / "absent", (".mp4",)) == []
    tmp = files.temp_sibling(tmp_path / "g.mp4")  # today's names carry the writer's pid
    assert tmp.name.startswith(f".g.mp4{files.TMP_MARK}{os.getpid()}-") and tmp.suffix == ".mp4"
