"""The synthetic world of the tiny model: one object moving (or not) on a plain background.

    a {colour} {shape} {motion} on a {background} background
    e.g. "a red circle moves left on a black background"

Every clip is drawn from a seed (numpy only): the object's size (a quarter of the frame's height,
±20 %), its start position and, for a moving object, the distance it travels (at least a third of
the frame along its axis), always keeping the whole object inside the frame. Frames are uint8
[T H W 3], without anti-aliasing: a pixel belongs to the object when its centre lies inside it.

    for caption, attributes, frames in sample_clips(4, seed=0, num_frames=9, height=32, width=48): ...
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator

import numpy as np

# Far-apart RGB values; no object colour is a background colour.
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128)}
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
           "magenta": (255, 0, 255), "cyan": (0, 255, 255), "orange": (255, 128, 0)}
SHAPES = ("square", "circle", "triangle")
# motion → unit direction (dy, dx) in image coordinates (y grows downwards)
MOTIONS = {"moves left": (0, -1), "moves right": (0, 1), "moves up": (-1, 0), "moves down": (1, 0),
           "stays still": (0, 0)}

SIZE_FRACTION = 0.25  # object size / frame height
SIZE_JITTER = 0.2  # sizes within ±20 %
MIN_TRAVEL = 1 / 3  # a moving object crosses at least this fraction of the frame along its axis

# Training paraphrases: (template, motion wording). Evaluation uses the canonical caption only.
PARAPHRASES = (
    "a {colour} {shape} {motion} on a {background} background",
    "a {colour} {shape} that {motion} on a {background} background",
    "on a {background} background, a {colour} {shape} {motion}",
    "a {background} background with a {colour} {shape} that {motion}",
    "the {colour} {shape} {motion} over a {background} background",
)
MOTION_WORDINGS = {
    "moves left": ("moves left", "moves to the left", "slides left", "goes left"),
    "moves right": ("moves right", "moves to the right", "slides right", "goes right"),
    "moves up": ("moves up", "moves upwards", "rises", "goes up"),
    "moves down": ("moves down", "moves downwards", "falls", "goes down"),
    "stays still": ("stays still", "does not move", "stays in place", "rests"),
}


@dataclasses.dataclass(frozen=True)
class Attributes:
    colour: str
    shape: str
    motion: str
    background: str

    def __post_init__(self):
        for name, value, allowed in (("colour", self.colour, COLOURS), ("shape", self.shape, SHAPES),
                                     ("motion", self.motion, MOTIONS), ("background", self.background, BACKGROUNDS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} {self.motion} on a {self.background} background"

    def paraphrase(self, rng: np.random.Generator) -> str:
        template = PARAPHRASES[rng.integers(len(PARAPHRASES))]
        wordings = MOTION_WORDINGS[self.motion]
        return template.format(colour=self.colour, shape=self.shape, motion=wordings[rng.integers(len(wordings))],
                               background=self.background)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the object is: its size (square side, circle diameter, triangle base and height) and its
    centre in every frame, in pixels (float, image coordinates: row y, column x)."""

    size: float
    centres: np.ndarray  # [T 2] (y, x)


def all_attributes() -> list[Attributes]:
    """Every combination of the grammar (7 colours × 3 shapes × 5 motions × 3 backgrounds = 315)."""
    return [Attributes(c, s, m, b) for c, s, m, b in itertools.product(COLOURS, SHAPES, MOTIONS, BACKGROUNDS)]


def all_prompts() -> list[str]:
    return [a.caption for a in all_attributes()]


def parse_caption(caption: str) -> Attributes:
    """The attributes of a canonical caption; ValueError naming the caption if it is outside the grammar."""
    words = caption.strip().split()
    # a {colour} {shape} {verb} {direction} on a {background} background
    if (len(words) != 9 or words[0] != "a" or words[5:7] != ["on", "a"] or words[8] != "background"):
        raise ValueError(f"caption outside the grammar: {caption!r}; expected "
                         "'a {colour} {shape} {motion} on a {background} background'")
    try:
        return Attributes(words[1], words[2], " ".join(words[3:5]), words[7])
    except ValueError as e:
        raise ValueError(f"caption outside the grammar: {caption!r}: {e}") from None


def random_attributes(rng: np.random.Generator) -> Attributes:
    pick = lambda options: list(options)[rng.integers(len(options))]
    return Attributes(pick(COLOURS), pick(SHAPES), pick(MOTIONS), pick(BACKGROUNDS))


def check_size(num_frames: int, height: int, width: int) -> None:
    if num_frames < 2 or height < 16 or width < 16:
        raise ValueError(f"clips need ≥ 2 frames of ≥ 16×16 pixels, got {num_frames} frames of {height}×{width}")


def layout(attributes: Attributes, num_frames: int, height: int, width: int, seed) -> Layout:
    """The object's size and path, drawn from `seed` (anything numpy's default_rng takes)."""
    check_size(num_frames, height, width)
    rng = np.random.default_rng(seed)
    size = height * SIZE_FRACTION * rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)
    extent = np.array([height, width], np.float64)
    lo, hi = np.full(2, size / 2), extent - size / 2  # the centre's range that keeps the object inside
    direction = np.array(MOTIONS[attributes.motion], np.float64)
    start = rng.uniform(lo, hi)
    travel = 0.0
    if direction.any():
        axis = int(np.flatnonzero(direction)[0])
        # distance along the axis: from a third of the frame up to all the room there is
        travel = rng.uniform(MIN_TRAVEL * extent[axis], hi[axis] - lo[axis])
        first = rng.uniform(lo[axis], hi[axis] - travel)
        start[axis] = first if direction[axis] > 0 else hi[axis] - (first - lo[axis])
    progress = np.linspace(0.0, 1.0, num_frames)[:, None]
    return Layout(size=float(size), centres=start + progress * travel * direction)


def shape_mask(shape: str, size: float, centre, height: int, width: int) -> np.ndarray:
    """[H W] bool: the pixels whose centres lie inside the shape."""
    y = np.arange(height)[:, None] + 0.5 - centre[0]
    x = np.arange(width)[None, :] + 0.5 - centre[1]
    half = size / 2
    if shape == "square":
        return (np.abs(y) <= half) & (np.abs(x) <= half)
    if shape == "circle":
        return y**2 + x**2 <= half**2
    # an isosceles triangle, apex up, base at the bottom: half-width grows from 0 to size/2
    return (y >= -half) & (y <= half) & (np.abs(x) <= (y + half) / 2)


def draw(attributes: Attributes, placement: Layout, height: int, width: int) -> np.ndarray:
    """uint8 [T H W 3] frames of the object at its layout."""
    frames = np.empty((len(placement.centres), height, width, 3), np.uint8)
    frames[:] = BACKGROUNDS[attributes.background]
    for frame, centre in zip(frames, placement.centres):
        frame[shape_mask(attributes.shape, placement.size, centre, height, width)] = COLOURS[attributes.colour]
    return frames


def render(attributes: Attributes, num_frames: int, height: int, width: int, seed) -> np.ndarray:
    """uint8 [T H W 3]: the clip of `attributes`, the same for the same seed."""
    return draw(attributes, layout(attributes, num_frames, height, width, seed), height, width)


def sample_clips(n: int, seed: int, num_frames: int, height: int, width: int, *,
                 paraphrase: bool = False) -> Iterator[tuple[str, Attributes, np.ndarray]]:
    """n random clips as (caption, attributes, uint8 frames [T H W 3]); clip i depends only on (seed, i).
    paraphrase: the caption is one of the training paraphrases instead of the canonical form."""
    check_size(num_frames, height, width)
    for i in range(n):
        yield sample_clip(i, seed, num_frames, height, width, paraphrase=paraphrase)


def sample_clip(index: int, seed: int, num_frames: int, height: int, width: int, *,
                paraphrase: bool = False) -> tuple[str, Attributes, np.ndarray]:
    """Clip `index` of `sample_clips(..., seed, ...)` alone: (caption, attributes, uint8 frames [T H W 3])."""
    rng = np.random.default_rng((seed, index))
    attributes = random_attributes(rng)
    frames = render(attributes, num_frames, height, width, rng.integers(2**63))
    return (attributes.paraphrase(rng) if paraphrase else attributes.caption), attributes, frames


def box_blur(x: np.ndarray) -> np.ndarray:
    """3×3 mean over the last two axes (edges replicated), as float64."""
    x = np.concatenate([x[..., :1, :], x, x[..., -1:, :]], axis=-2).astype(np.float64)
    x = x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]
    x = np.concatenate([x[..., :1], x, x[..., -1:]], axis=-1)
    return (x[..., :-2] + x[..., 1:-1] + x[..., 2:]) / 9


def simulate_decoder(frames: np.ndarray, seed, noise_std: float = 10.0) -> np.ndarray:
    """What a decoder's imperfection might do to a clip [T H W 3]: a 3×3 box blur (edges replicated)
    and gaussian noise of `noise_std` (in 0..255 units), rounded back to uint8."""
    blurred = np.moveaxis(box_blur(np.moveaxis(frames, -1, 1)), 1, -1)
    noisy = blurred + np.random.default_rng(seed).normal(0.0, noise_std, blurred.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)
