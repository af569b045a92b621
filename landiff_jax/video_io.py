"""Writing generated videos: frames in [0, 1] or uint8 → mp4 (H.264, the ffmpeg binary shipped by
imageio-ffmpeg), atomically; a video and its semantic tokens (.npy) as one unit.

The encoder is our own `subprocess.Popen` of ffmpeg fed raw frames on a pipe: no `preexec_fn`
(imageio's writer uses one, which makes CPython fork through the at-fork hooks and JAX warn about
os.fork() in a multithreaded process). ffmpeg gets its own process group (`process_group=0`, set
by the child without Python code), so a terminal's Ctrl-C reaches only us and our `finally` stops
it; if we die without unwinding (SIGKILL), its stdin pipe closes and it ends at once. A write
counts only when ffmpeg exits 0 and the file decodes to the expected number of frames.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np

from landiff_jax.files import commit, temp_sibling, write_bytes  # noqa: F401  (write_bytes: re-exported)


class VideoWriteError(OSError):
    """The encoder failed (disk full, bad size ...) or wrote a file that does not decode."""


def to_uint8(frames) -> np.ndarray:
    """[f H W 3] floats in [0, 1] (clipped) or uint8 → uint8; non-finite values are refused."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    frames = frames.astype(np.float32)
    bad = ~np.isfinite(frames)
    if bad.any():
        raise ValueError(f"the video holds {int(bad.sum())} non-finite values (NaN/inf) of {frames.size}: "
                         f"not written (corrupted weights or a numerical failure)")
    return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_npy(path: str | Path, array) -> Path:
    """np.save to `path` atomically (parent created)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return write_bytes(path, buffer.getvalue())


def _encode(tmp: Path, frames: np.ndarray, fps: int, pixelformat: str) -> None:
    """frames (uint8 [f H W 3]) → H.264 mp4 at `tmp`; raises VideoWriteError unless ffmpeg succeeded."""
    import imageio_ffmpeg

    f, h, w, _ = frames.shape
    # crf 10 is imageio's quality=8 for libx264 (what the project wrote before)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0",
           "-an", "-c:v", "libx264", "-crf", "10", "-pix_fmt", pixelformat, "-f", "mp4", str(tmp)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            close_fds=True, process_group=0)
    try:
        # communicate: writes the frames while draining stderr (no pipe deadlock), survives an early exit
        _, err = proc.communicate(np.ascontiguousarray(frames).tobytes())
        status = proc.returncode
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C, SIGTERM): the encoder never outlives us
            proc.kill()
            proc.communicate()
    err = err.decode(errors="replace").strip()
    if status != 0:
        last = err.splitlines()[-1] if err else "no message"
        raise VideoWriteError(f"ffmpeg failed writing {tmp.name} (exit {status}): {last}")


def count_frames(path: Path) -> int:
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def write_mp4(path: str | Path, frames, fps: int = 8, pixelformat: str = "yuv420p") -> Path:
    """Write [f H W 3] frames to `path` (parent created); nothing is left behind on failure and an
    existing file is replaced only by a complete, decodable video.
    pixelformat: yuv420p plays everywhere; yuv444p keeps full-resolution colour."""
    path = Path(path)
    tmp = encode_temp(path, frames, fps, pixelformat)
    try:
        return commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def encode_temp(path: Path, frames, fps: int = 8, pixelformat: str = "yuv420p") -> Path:
    """The video encoded and checked in a temporary sibling of `path` (the caller commits or removes it)."""
    frames = to_uint8(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames [f, H, W, 3] with f >= 1, got shape {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        _encode(tmp, frames, fps, pixelformat)
        written = count_frames(tmp)
        if written != frames.shape[0]:
            raise VideoWriteError(f"{tmp.name} decodes to {written} frames, {frames.shape[0]} were written")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def free_stem(directory: Path, stem: str, overwrite: bool, suffixes=(".mp4", ".npy")) -> str:
    """`stem`, or with overwrite=False the first `stem-<n>` (n = 1, 2, ...) whose files all are absent."""
    taken = lambda s: any((directory / f"{s}{x}").exists() for x in suffixes)  # noqa: E731
    if overwrite or not taken(stem):
        return stem
    n = 1
    while taken(f"{stem}-{n}"):
        n += 1
    return f"{stem}-{n}"


def write_video_and_codes(directory: Path, stem: str, frames, codes, fps: int = 8, overwrite: bool = False,
                          pixelformat: str = "yuv420p") -> tuple[Path, Path]:
    """`<stem>.mp4` and `<stem>.npy` (semantic tokens) as one unit, under a free name (see
    `free_stem`) unless `overwrite`. Both are written to checked temporaries first; then an old
    `.npy` is removed, the mp4 renamed, the npy renamed. A kill at any point leaves the old pair,
    an old or new mp4 without codes, or the new pair: never codes beside a video they did not make."""
    stem = free_stem(directory, stem, overwrite)
    mp4, npy = directory / f"{stem}.mp4", directory / f"{stem}.npy"
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(codes))
    tmp_mp4 = encode_temp(mp4, frames, fps, pixelformat)
    tmp_npy = None
    try:
        tmp_npy = temp_sibling(npy)
        tmp_npy.write_bytes(buffer.getvalue())
        npy.unlink(missing_ok=True)
        commit(tmp_mp4, mp4)
        commit(tmp_npy, npy)
    finally:
        tmp_mp4.unlink(missing_ok=True)
        if tmp_npy is not None:
            tmp_npy.unlink(missing_ok=True)
    return mp4, npy


def read_mp4(path: str | Path) -> np.ndarray:
    """Decode an mp4 back to uint8 [f H W 3] (used to check written files)."""
    import imageio.v2 as imageio

    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        return np.stack([frame for frame in reader])  # list(reader) trips on its infinite len()
