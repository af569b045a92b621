"""Writing generated videos: frames in [0, 1] or uint8 → mp4 (H.264 via imageio-ffmpeg), atomically."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def to_uint8(frames) -> np.ndarray:
    """[f H W 3] floats in [0, 1] (clipped) or uint8 → uint8."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return np.round(np.clip(frames.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def atomic_path(path: Path):
    """A temporary sibling of `path` (same suffix) to write to, then `os.replace` onto `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """`data` to `path` atomically (parent created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    try:
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_npy(path: str | Path, array) -> Path:
    """np.save to `path` atomically (parent created)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return write_bytes(path, buffer.getvalue())


def write_mp4(path: str | Path, frames, fps: int = 8, pixelformat: str = "yuv420p") -> Path:
    """Write [f H W 3] frames to `path` (parent created); nothing is left behind on failure.
    pixelformat: yuv420p plays everywhere; yuv444p keeps full-resolution colour."""
    import imageio.v2 as imageio

    path = Path(path)
    frames = to_uint8(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [f, H, W, 3], got shape {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    try:
        # macro_block_size=1 keeps odd sizes (e.g. tiny presets) unpadded.
        with imageio.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                pixelformat=pixelformat, macro_block_size=1) as writer:
            for frame in frames:
                writer.append_data(frame)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_mp4(path: str | Path) -> np.ndarray:
    """Decode an mp4 back to uint8 [f H W 3] (used to check written files)."""
    import imageio.v2 as imageio

    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        return np.stack([frame for frame in reader])  # list(reader) trips on its infinite len()
