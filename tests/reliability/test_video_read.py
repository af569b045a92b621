"""Issue 14 ("no fork noise"): every video read is our own ffmpeg subprocess (video_io.read_mp4),
with no preexec_fn, so JAX's os.fork() warning never shows; it decodes the very frames imageio's
FFMPEG reader (what the project read with before; kept here only as the reference) gives, bit for
bit; an interrupted read leaves no ffmpeg behind."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from landiff_jax import video_io
from landiff_jax.data import clips, synthetic
from landiff_jax.video_io import VideoReadError, count_frames, read_mp4, write_mp4
from tests.reliability.conftest import processes_mentioning

REPO = Path(__file__).resolve().parents[2]


def imageio_frames(path: Path, output_params=(), max_frames=None) -> np.ndarray:
    """The reference: imageio's FFMPEG reader, as video_io and clips.decode_video used it before."""
    import imageio.v2 as imageio

    frames = []
    with imageio.get_reader(str(path), format="FFMPEG", output_params=list(output_params)) as reader:
        for frame in reader:
            frames.append(frame)
            if len(frames) == max_frames:
                break
    return np.stack(frames)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """mp4s of the synthetic world: 4:2:0 at an even size, 4:4:4 at odd sizes, another frame rate,
    and one whose container says 'display rotated by 90°' (ffmpeg turns its frames upright)."""
    root = tmp_path_factory.mktemp("videos")
    paths = {
        "420_even": write_mp4(root / "420_even.mp4", synthetic.sample_clip(0, 5, 12, 72, 100)[2], fps=8),
        "444_odd": write_mp4(root / "444_odd.mp4", synthetic.sample_clip(1, 5, 10, 33, 47)[2], fps=8,
                             pixelformat="yuv444p"),
        "444_odd_24fps": write_mp4(root / "444_odd_24fps.mp4", synthetic.sample_clip(2, 5, 30, 61, 45)[2], fps=24,
                                   pixelformat="yuv444p"),
    }
    paths["rotated"] = root / "rotated.mp4"
    subprocess.run([video_io.ffmpeg_exe(), "-v", "error", "-display_rotation:v:0", "90", "-i", str(paths["420_even"]),
                    "-c", "copy", str(paths["rotated"])], check=True)
    return paths


@pytest.mark.filterwarnings("ignore:os.fork")  # the reference reader forks
def test_plain_reads_match_imageio_bit_for_bit(videos):
    for name, path in videos.items():
        ours, reference = read_mp4(path), imageio_frames(path)
        assert ours.dtype == np.uint8 and ours.shape == reference.shape, name
        np.testing.assert_array_equal(ours, reference, err_msg=name)
        assert count_frames(path) == len(reference), name
    assert read_mp4(videos["rotated"]).shape == (12, 100, 72, 3)  # upright: the probe sees the decoded size


@pytest.mark.filterwarnings("ignore:os.fork")
@pytest.mark.parametrize("name, spec", [
    ("420_even", clips.ClipSpec(9, 64, 96)),  # crop 72×100 → 69×100 (3:2), resize
    ("444_odd", clips.ClipSpec(5, 20, 36)),  # crop 33×47 → 26×47 (5:9), resize
    ("444_odd_24fps", clips.ClipSpec(9, 32, 16)),  # 24 → 8 fps, crop 61×45 → 61×30 (2:1 portrait), resize
    ("rotated", clips.ClipSpec(8, 24, 24)),
])
def test_decode_video_matches_imageio_through_the_filter_chain(videos, name, spec):
    reference = imageio_frames(videos[name], ["-vf", clips.filter_chain(spec), "-frames:v", str(spec.num_frames)],
                               spec.num_frames)
    ours = clips.decode_video(videos[name], spec)
    assert ours.shape == (spec.num_frames, spec.height, spec.width, 3)
    np.testing.assert_array_equal(ours, reference)


def test_unreadable_and_short_files(tmp_path, videos):
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "cut.mp4").write_bytes(videos["420_even"].read_bytes()[:300])
    for name in ("notes.mp4", "cut.mp4", "missing.mp4"):
        with pytest.raises(VideoReadError, match=r"ffmpeg exit \d+: .+") as caught:
            read_mp4(tmp_path / name)
        assert "\n" not in str(caught.value)
        with pytest.raises(clips.BadClip, match=r"^cannot decode \(ffmpeg exit \d+: ") as bad:
            clips.decode_video(tmp_path / name, clips.ClipSpec(2, 16, 16))
        assert bad.value.kind == "unreadable"
    with pytest.raises(clips.BadClip, match=r"^12 frames at 8 fps, need 13 \(1.50 s\)$") as bad:
        clips.decode_video(videos["420_even"], clips.ClipSpec(13, 16, 16))
    assert bad.value.kind == "too_short"


def test_no_fork_warning_with_jax_running(videos):
    import jax.numpy as jnp

    jnp.ones(3).block_until_ready()  # JAX's backend (and its threads) are up: a fork would warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_mp4(videos["420_even"])
        count_frames(videos["444_odd"])
        clips.decode_video(videos["444_odd_24fps"], clips.ClipSpec(9, 32, 16))
    assert not [w for w in caught if "fork" in str(w.message)], [str(w.message) for w in caught]


READER = """
import sys
from landiff_jax.files import exit_on_sigterm
from landiff_jax.video_io import read_mp4
exit_on_sigterm()
print("reading", flush=True)
read_mp4(sys.argv[1], size=(16, 16))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_read_leaves_no_ffmpeg(tmp_path, signum):
    """ffmpeg waits on a fifo no one writes to (a slow source): the reader is stopped mid-read."""
    fifo = tmp_path / "never_written.mp4"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", READER, str(fifo)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    ffmpeg = lambda: [pid for pid in processes_mentioning(str(fifo)) if pid != proc.pid]  # noqa: E731
    try:
        assert proc.stdout.readline().strip() == "reading"
        for _ in range(200):  # until ffmpeg runs
            if ffmpeg():
                break
            time.sleep(0.05)
        assert ffmpeg(), "ffmpeg never started"
        proc.send_signal(signum)
        assert proc.wait(timeout=30) != 0
        time.sleep(0.2)
        assert ffmpeg() == []
    finally:
        proc.kill()
        for pid in ffmpeg():  # never leave the test's own leftovers behind
            os.kill(pid, signal.SIGKILL)
