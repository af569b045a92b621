"""Videos in and out through the ffmpeg binary shipped by imageio-ffmpeg. Writing generated videos:
frames in [0, 1] or uint8 → mp4 (H.264), atomically, whole or as the frames arrive (`Mp4Stream`);
a video and its semantic tokens (.npy) as one unit. Reading: `read_mp4` decodes any video ffmpeg
opens to uint8 RGB frames, through a filter chain if asked (`count_frames` counts them).

Both directions are our own `subprocess.Popen` of ffmpeg, raw RGB frames on a pipe, with no
`preexec_fn` (imageio's reader and writer use one, which makes CPython fork through the at-fork
hooks and JAX warn about os.fork() in a multithreaded process). ffmpeg gets its own process group
(`process_group=0`, set by the child without Python code), so a terminal's Ctrl-C reaches only us
and our `finally` stops it; if we die without unwinding (SIGKILL), its pipe to us closes and it
ends at once. A write counts only when ffmpeg exits 0 and the file decodes to the expected number
of frames; a read, only when ffmpeg exits 0 having written whole frames.
"""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from landiff_jax.files import commit, signals_deferred, temp_sibling, write_bytes  # noqa: F401  (write_bytes: re-exported)


class VideoWriteError(OSError):
    """The encoder failed (disk full, bad size ...) or wrote a file that does not decode."""


class VideoReadError(OSError):
    """ffmpeg cannot decode a video (missing, not a video, damaged); `reason` says why in one line."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot decode {path} ({reason})")
        self.path, self.reason = path, reason


def ffmpeg_exe() -> str:
    """The ffmpeg binary imageio-ffmpeg ships; VideoWriteError in one line when there is none. The
    tools that write mp4 call it before any heavy work, so a missing encoder is not found after
    the video has been generated."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        raise VideoWriteError("video files need ffmpeg, from the imageio-ffmpeg package, which is not "
                              "installed (pip install imageio-ffmpeg)") from None
    except RuntimeError as e:  # installed without a usable binary
        raise VideoWriteError(f"imageio-ffmpeg has no usable ffmpeg binary: {e}") from None


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


class Mp4Stream:
    """An mp4 written as its frames arrive (streaming generation): one ffmpeg process fed on a
    pipe, writing a temporary sibling of `path`. `commit()` checks it (ffmpeg exit 0, the file
    decodes to every frame written) and renames it onto `path`; `finish()` checks it and returns
    the temporary for the caller to commit (e.g. `commit_with_codes`); `abort()`, and any
    exception or signal that unwinds a `with` block, stops ffmpeg and removes the temporary:
    nothing ever appears at `path` before the commit.

        with Mp4Stream("fox.mp4") as video:
            for chunk in pipe.generate_stream(prompt, num_frames=193):
                video.write(chunk.frames[0])
            video.commit()
    ffmpeg's messages go to a file, not a pipe, so that it never blocks on them while we write."""

    def __init__(self, path: str | Path, fps: int = 8, pixelformat: str = "yuv420p"):
        self.path, self.fps, self.pixelformat = Path(path), fps, pixelformat
        self.tmp: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.errors = None
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (H, W) of the first frames

    def __enter__(self) -> "Mp4Stream":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()

    def _start(self, height: int, width: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.errors = tempfile.TemporaryFile()
        with signals_deferred():  # the temporary and ffmpeg exist only once `abort` knows them
            self.tmp = temp_sibling(self.path)
            # crf 10 is imageio's quality=8 for libx264 (what the project wrote before)
            cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-s", f"{width}x{height}", "-r", str(self.fps), "-i", "pipe:0",
                   "-an", "-c:v", "libx264", "-crf", "10", "-pix_fmt", self.pixelformat, "-f", "mp4", str(self.tmp)]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.errors,
                                         close_fds=True, process_group=0)

    def write(self, frames) -> None:
        """Append frames [f H W 3] (uint8, or floats in [0, 1]); every call the same H and W."""
        frames = to_uint8(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [f, H, W, 3], got shape {frames.shape}")
        if self.size is None:
            self.size = frames.shape[1:3]
            self._start(*self.size)
        elif frames.shape[1:3] != self.size:
            raise ValueError(f"frames of {frames.shape[1]}×{frames.shape[2]} after {self.size[0]}×{self.size[1]}")
        try:
            self.proc.stdin.write(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError:  # ffmpeg stopped: its status and message say why
            self._wait()
        self.frames += frames.shape[0]

    def _wait(self) -> None:
        """Close ffmpeg's input, wait for it; VideoWriteError unless it exited 0."""
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        status = self.proc.wait()
        if status != 0:
            self.errors.seek(0)
            lines = self.errors.read().decode(errors="replace").strip().splitlines()
            if status < 0:  # a signal: SIGXFSZ is the file-size limit's
                why = f"killed by {signal.Signals(-status).name}" + (
                    ": the file exceeds the file-size limit (ulimit -f)" if -status == signal.SIGXFSZ else "")
            else:
                why = f"exit {status}"
            raise VideoWriteError(f"ffmpeg failed writing {self.tmp.name} ({why}): "
                                  f"{lines[-1] if lines else 'no message'}")

    def finish(self) -> Path:
        """The checked temporary (the caller commits or removes it)."""
        if self.frames == 0:
            raise ValueError("no frames were written")
        try:
            self._wait()
            written = count_frames(self.tmp)
            if written != self.frames:
                raise VideoWriteError(f"{self.tmp.name} decodes to {written} frames, {self.frames} were written")
        except BaseException:
            self.abort()
            raise
        self.errors.close()
        return self.tmp

    def commit(self) -> Path:
        """`finish`, then the video renamed onto `path` (replacing a file there): the final name."""
        tmp = self.finish()
        try:
            return commit(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Stop ffmpeg (if running) and remove the temporary; safe to call at any time, again."""
        if self.proc is not None and self.proc.poll() is None:  # interrupted: the encoder never outlives us
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if self.errors is not None:
            self.errors.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


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
    with Mp4Stream(path, fps, pixelformat) as stream:
        stream.write(frames)
        return stream.finish()


def free_stem(directory: Path, stem: str, overwrite: bool, suffixes=(".mp4", ".npy")) -> str:
    """`stem`, or with overwrite=False the first `stem-<n>` (n = 1, 2, ...) whose files all are absent."""
    taken = lambda s: any((directory / f"{s}{x}").exists() for x in suffixes)  # noqa: E731
    if overwrite or not taken(stem):
        return stem
    n = 1
    while taken(f"{stem}-{n}"):
        n += 1
    return f"{stem}-{n}"


def video_paths(directory: Path, stem: str, overwrite: bool = False) -> tuple[Path, Path]:
    """(`<stem>.mp4`, `<stem>.npy`) under a free name (see `free_stem`) unless `overwrite`."""
    stem = free_stem(directory, stem, overwrite)
    return directory / f"{stem}.mp4", directory / f"{stem}.npy"


def write_video_and_codes(directory: Path, stem: str, frames, codes, fps: int = 8, overwrite: bool = False,
                          pixelformat: str = "yuv420p") -> tuple[Path, Path]:
    """`<stem>.mp4` and `<stem>.npy` (semantic tokens) as one unit (`video_paths`, `commit_with_codes`)."""
    mp4, npy = video_paths(directory, stem, overwrite)
    return commit_with_codes(encode_temp(mp4, frames, fps, pixelformat), mp4, npy, codes)


def commit_with_codes(tmp_mp4: Path, mp4: Path, npy: Path, codes) -> tuple[Path, Path]:
    """A checked temporary video (`encode_temp`, `Mp4Stream.finish`) and its codes committed as one
    unit: the codes go to a temporary too; then an old `.npy` is removed, the mp4 renamed, the npy
    renamed. A kill at any point leaves the old pair, an old or new mp4 without codes, or the new
    pair: never codes beside a video they did not make. The temporaries are gone either way."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(codes))
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


# --- reading -------------------------------------------------------------------------------

def _ffmpeg_output(path: Path, output: list[str], chunk: int) -> Iterator[bytes]:
    """What ffmpeg writes to its stdout decoding `path` with the `output` options, in pieces of
    `chunk` bytes (the last one may be shorter); then VideoReadError unless it exited 0, with its
    last message. Its messages go to a file, so that it never blocks on them while we read. ffmpeg
    is killed in `finally`: an exception, a signal or an early `close()` never leaves it running."""
    with tempfile.TemporaryFile() as errors:
        cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), *output, "pipe:1"]
        proc = None
        try:
            with signals_deferred():  # a signal acts only once `finally` knows ffmpeg
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                        close_fds=True, process_group=0)
            while piece := proc.stdout.read(chunk):
                yield piece
            status = proc.wait()
        finally:
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
        if status != 0:
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines()
            why = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit {status}"
            raise VideoReadError(path, f"ffmpeg {why}: {lines[-1][:200] if lines else 'no message'}")


def frame_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of the frames ffmpeg decodes from `path` (after its autorotation): from the header of
    its first frame written as a PPM image (P6, width, height, maximum value; whitespace-separated)."""
    path = Path(path)
    with contextlib.closing(_ffmpeg_output(path, ["-frames:v", "1", "-an", "-pix_fmt", "rgb24", "-c:v", "ppm",
                                                  "-f", "image2pipe"], 64)) as pieces:
        header = next(pieces, b"").split(maxsplit=3)
    if len(header) < 3 or header[0] != b"P6" or not (header[1].isdigit() and header[2].isdigit()):
        raise VideoReadError(path, "ffmpeg decoded no video frame")
    return int(header[2]), int(header[1])


def _frames(path: Path, size: tuple[int, int], output: list[str]) -> Iterator[np.ndarray]:
    """uint8 [H W 3] frames of ffmpeg's raw RGB output (`output` + rgb24 rawvideo) of frames of `size`."""
    height, width = size
    frame_bytes = height * width * 3
    short = 0
    with contextlib.closing(_ffmpeg_output(path, [*output, "-an", "-pix_fmt", "rgb24", "-f", "rawvideo"],
                                           frame_bytes)) as pieces:
        for piece in pieces:
            if len(piece) < frame_bytes:  # the last piece: ffmpeg's exit status is checked first
                short = len(piece)
                continue
            yield np.frombuffer(piece, np.uint8).reshape(height, width, 3)
    if short:
        raise VideoReadError(path, f"ffmpeg wrote {short} bytes after its last whole {width}×{height} frame")


def read_mp4(path: str | Path, size: tuple[int, int] | None = None, filters: str | None = None,
             max_frames: int | None = None) -> np.ndarray:
    """A video (an mp4, or any file ffmpeg opens) decoded to uint8 RGB frames [f H W 3]. `filters`:
    an ffmpeg -vf filter chain; `max_frames`: stop after that many; `size` (H, W): what the frames
    are (after the filters), probed with `frame_size` when not given. VideoReadError when ffmpeg
    cannot decode it."""
    path = Path(path)
    size = size or frame_size(path)
    output = [*(["-vf", filters] if filters else []), *(["-frames:v", str(max_frames)] if max_frames else [])]
    with contextlib.closing(_frames(path, size, output)) as frames:
        video = list(frames)
    return np.stack(video) if video else np.zeros((0, *size, 3), np.uint8)


def count_frames(path: str | Path) -> int:
    """The frames ffmpeg decodes from `path` (every one is decoded; none is kept)."""
    path = Path(path)
    with contextlib.closing(_frames(path, frame_size(path), [])) as frames:
        return sum(1 for _ in frames)
