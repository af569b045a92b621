"""Video clips in: the frames and caption of every clip, before the frozen models see them.

Two sources, both index-addressable (`clip(i)` gives the same clip every time, so an interrupted
shard is redone from it) and both giving every clip as uint8 frames [F H W 3] of one `ClipSpec`:

- `VideoList`: video files listed in a jsonl file, one object per line,
      {"path": "clips/0001.mp4", "caption": "a dog runs on a beach", "motion_score": 0.4}
  (`motion_score` optional; a relative path is relative to the list file). Decoding is one
  ffmpeg subprocess per video (`video_io.read_mp4`), whose filter chain does the work: resample
  to `fps` (ffmpeg's `fps` filter, round=up: output frame k is the last input frame at or before
  time k/fps, the frame on screen then; from a constant-rate video, input frame
  floor(k · rate / fps)), centre-crop to the target aspect, resize (bicubic) to the target size,
  first `num_frames` frames. `scan` decodes every listed video once and sorts out the unusable
  ones (unreadable, shorter than `num_frames` at `fps`, empty caption): they are counted and
  listed in the report, and the dataset holds the usable clips in list order.
- `SyntheticVideos`: clips of the synthetic world (`data/synthetic.py`) rendered at the target
  size, a pure function of (seed, index), canonical captions or training paraphrases.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from landiff_jax import video_io
from landiff_jax.data import synthetic
from landiff_jax.files import file_digest

FPS = 8  # the paper's frame rate for every stage
BAD_KINDS = ("unreadable", "too_short", "empty_caption")


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What every clip becomes: `num_frames` frames of height × width at `fps`."""

    num_frames: int
    height: int
    width: int
    fps: int = FPS

    def __post_init__(self):
        if min(self.num_frames, self.height, self.width, self.fps) < 1:
            raise ValueError(f"clip frames, size and fps must be >= 1, got {self}")


@dataclasses.dataclass(frozen=True)
class Clip:
    caption: str
    frames: np.ndarray  # uint8 [F H W 3]
    motion_score: float


class BadClip(Exception):
    """A clip that cannot be used; `kind` is one of BAD_KINDS."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class ListError(ValueError):
    """A malformed list file; the message is one line naming the file and line."""


# --- the list file -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Entry:
    line: int  # 1-based line in the list file
    path: Path
    caption: str
    motion_score: float | None


def read_list(path: str | Path) -> list[Entry]:
    """The entries of a jsonl list file (blank lines skipped); ListError for malformed lines."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ListError(f"{path}: cannot read the list file ({type(e).__name__}: {e})") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError as e:
            raise ListError(f"{where}: not a JSON object ({e})") from None
        if not (isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("caption"), str)):
            raise ListError(f'{where}: expected {{"path": str, "caption": str, "motion_score": number (optional)}}')
        score = item.get("motion_score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise ListError(f"{where}: motion_score must be a number, got {score!r}")
        video = Path(item["path"]).expanduser()
        entries.append(Entry(number, video if video.is_absolute() else path.parent / video, item["caption"],
                             None if score is None else float(score)))
    if not entries:
        raise ListError(f"{path}: the list file has no entries")
    return entries


# --- decoding ------------------------------------------------------------------------------

def filter_chain(spec: ClipSpec) -> str:
    """ffmpeg filters: resample to spec.fps, centre-crop to the target aspect, resize (bicubic)."""
    h, w = spec.height, spec.width
    crop = f"crop='min(iw,ih*{w}/{h})':'min(ih,iw*{h}/{w})'"  # centred by default
    return f"fps={spec.fps}:round=up,{crop},scale={w}:{h}:flags=bicubic"


def decode_video(path: Path, spec: ClipSpec) -> np.ndarray:
    """The first spec.num_frames frames of the video at spec.fps, cropped and resized: uint8 [F H W 3].
    BadClip('unreadable') when ffmpeg cannot decode it, BadClip('too_short') when it has fewer frames."""
    try:
        video = video_io.read_mp4(path, (spec.height, spec.width), filter_chain(spec), spec.num_frames)
    except video_io.VideoReadError as e:
        raise BadClip("unreadable", f"cannot decode ({e.reason})") from None
    if len(video) < spec.num_frames:
        raise BadClip("too_short", f"{len(video)} frames at {spec.fps} fps, need {spec.num_frames} "
                                   f"({(spec.num_frames - 1) / spec.fps:.2f} s)")
    return video


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int, ahead: int) -> Iterator[Any]:
    """fn over items in worker threads (decoding runs in ffmpeg subprocesses), results in order,
    at most `ahead` in flight (bounded memory)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# --- the sources -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VideoList:
    """The usable entries of a list file (found by `scan`); clip i is the i-th usable entry."""

    list_file: Path
    digest: str  # sha256 of the list file: a changed list is another dataset
    entries: tuple[Entry, ...]  # usable ones only
    spec: ClipSpec
    motion_score: float  # for entries without one

    def __len__(self) -> int:
        return len(self.entries)

    def caption(self, index: int) -> str:
        return self.entries[index].caption

    def clip(self, index: int) -> Clip:
        entry = self.entries[index]
        try:
            frames = decode_video(entry.path, self.spec)
        except BadClip as e:  # it decoded during the scan: the file changed since
            raise BadClip(e.kind, f"{entry.path} (line {entry.line}): {e.reason}, but it was usable when "
                                  "scanned; restart with a fresh output directory") from None
        score = self.motion_score if entry.motion_score is None else entry.motion_score
        return Clip(entry.caption, frames, score)

    @property
    def meta(self) -> dict[str, Any]:
        return {"source": "videos", "list": str(self.list_file), "list_sha256": self.digest,
                "clips": len(self), "default_motion_score": self.motion_score}


def scan(list_file: str | Path, spec: ClipSpec, motion_score: float, workers: int = 4,
         progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[VideoList, dict[str, Any]]:
    """Decode every entry of `list_file` once; (the usable clips, the report's clip section:
    counts and, per kind of bad clip, its entries with the reason)."""
    entries = read_list(list_file)

    def check(entry: Entry) -> BadClip | None:
        if not entry.caption.strip():
            return BadClip("empty_caption", "the caption is empty")
        try:
            decode_video(entry.path, spec)
        except BadClip as e:
            return e
        return None

    bad = {kind: [] for kind in BAD_KINDS}
    usable = []
    for done, (entry, problem) in enumerate(zip(entries, ordered_map(check, entries, workers, 2 * workers)), 1):
        if problem is None:
            usable.append(entry)
        else:
            bad[problem.kind].append({"line": entry.line, "path": str(entry.path), "reason": problem.reason})
        progress(done, len(entries))
    source = VideoList(Path(list_file), file_digest(Path(list_file), "sha256"), tuple(usable), spec, motion_score)
    report = {"listed": len(entries), "usable": len(usable), "bad_counts": {k: len(v) for k, v in bad.items()},
              "bad": bad}
    return source, report


@dataclasses.dataclass(frozen=True)
class SyntheticVideos:
    """`num_clips` clips of the synthetic world; motion_score is a constant (by default that of
    GenerateOptions, so the model is trained on what generation passes)."""

    num_clips: int
    seed: int
    spec: ClipSpec
    paraphrase: bool = False
    motion_score: float = 0.1

    def __post_init__(self):
        if self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {self.num_clips}")
        synthetic.check_size(self.spec.num_frames, self.spec.height, self.spec.width)

    def __len__(self) -> int:
        return self.num_clips

    def caption(self, index: int) -> str:
        # the caption is drawn before, and independently of, the rendering: render the smallest clip
        return synthetic.sample_clip(index, self.seed, 2, 16, 16, paraphrase=self.paraphrase)[0]

    def clip(self, index: int) -> Clip:
        caption, _, frames = synthetic.sample_clip(index, self.seed, self.spec.num_frames, self.spec.height,
                                                   self.spec.width, paraphrase=self.paraphrase)
        return Clip(caption, frames, self.motion_score)

    @property
    def meta(self) -> dict[str, Any]:
        return {"source": "synthetic_videos", "clips": self.num_clips, "seed": self.seed,
                "paraphrase": self.paraphrase, "motion_score": self.motion_score}
