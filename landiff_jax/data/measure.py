"""Reading a synthetic-world clip back from its pixels alone (numpy only): background, object
colour, motion and shape, for clips as the renderer draws them and as a model generates them
(blurred edges, noise, washed-out colours).

    m = measure(frames)   # uint8 [T H W 3] → Measurement
    m.attributes()        # {'colour': 'red', 'shape': 'circle', 'motion': 'moves left', 'background': 'black'}

An attribute that cannot be measured (no object stands out from the background) is 'none'.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from landiff_jax.data.synthetic import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, box_blur, shape_mask

MIN_CONTRAST = 60.0  # RGB distance from the background below which nothing counts as the object
CORE = 0.75  # object-colour pixels: at least this fraction of the strongest contrast
STILL_BELOW = 1 / 6  # centroid travel (fraction of the frame along the axis) under which the object stays still
MIN_PIXELS = 4  # a frame counts when its object weighs (or, for shapes, covers half of) this many pixels
# object weight of a pixel: 0 up to RAMP[0] of the object's contrast, 1 from RAMP[1], linear between
# (symmetric about one half, so a blurred edge keeps its area; noise near the background counts 0)
RAMP = (0.2, 0.8)
SUPERSAMPLE = 4  # shape templates: 4×4 samples per pixel
SHAPE_FRAMES = 5  # frames whose shape fits are averaged

NONE = "none"  # the value of an attribute that cannot be measured (no object found)


@dataclasses.dataclass(frozen=True)
class Measurement:
    background: str
    colour: str
    motion: str
    shape: str
    # the numbers behind them, for reports
    background_rgb: tuple
    colour_rgb: tuple
    travel: tuple  # (dy / H, dx / W): centroid displacement over the clip
    shape_errors: dict  # shape → mean template misfit (the measured shape has the least)

    def attributes(self) -> dict[str, str]:
        return {"colour": self.colour, "shape": self.shape, "motion": self.motion, "background": self.background}


def nearest(rgb, palette: dict[str, tuple]) -> str:
    names = list(palette)
    distances = np.linalg.norm(np.asarray([palette[n] for n in names], np.float64) - rgb, axis=-1)
    return names[int(np.argmin(distances))]


def border_pixels(frames: np.ndarray) -> np.ndarray:
    """[N 3]: the outermost rows and columns of every frame."""
    return np.concatenate([frames[:, 0], frames[:, -1], frames[:, 1:-1, 0], frames[:, 1:-1, -1]], axis=1).reshape(-1, 3)


def object_weights(frames: np.ndarray, background_rgb: np.ndarray):
    """The object's colour (median of its strongest pixels) and its weight per pixel [T H W] in
    [0, 1] (see RAMP): the share of the object's colour against the background's."""
    distance = np.linalg.norm(frames.astype(np.float32) - background_rgb.astype(np.float32), axis=-1)  # [t h w]
    strongest = np.quantile(distance, 1 - 1e-3)
    if strongest < MIN_CONTRAST:
        return None, np.zeros(distance.shape)
    core = distance >= CORE * strongest
    colour_rgb = np.median(frames[core].astype(np.float64), axis=0)
    contrast = max(MIN_CONTRAST, np.linalg.norm(colour_rgb - background_rgb))
    return colour_rgb, np.clip((distance / contrast - RAMP[0]) / (RAMP[1] - RAMP[0]), 0.0, 1.0)


def measure_motion(weights: np.ndarray) -> tuple[str, tuple]:
    """Direction of the centroid's path (a least-squares line through the frames' centroids, so one
    bad frame does not decide), or 'stays still' when it travels less than STILL_BELOW."""
    t, h, w = weights.shape
    ys, xs = np.indices((h, w)) + 0.5
    times, centroids = [], []
    for i, weight in enumerate(weights):
        area = weight.sum()
        if area >= MIN_PIXELS:
            times.append(i)
            centroids.append(((weight * ys).sum() / area / h, (weight * xs).sum() / area / w))
    if len(times) < 2:
        return NONE, (0.0, 0.0)
    times, centroids = np.asarray(times, np.float64), np.asarray(centroids)
    slope = np.polyfit(times, centroids, 1)[0]  # [2]: (dy, dx) per frame, fractions of the frame
    travel = slope * (t - 1)
    if np.abs(travel).max() < STILL_BELOW:
        return "stays still", tuple(travel)
    axis = int(np.argmax(np.abs(travel)))
    direction = [0, 0]
    direction[axis] = int(np.sign(travel[axis]))
    return next(m for m, d in MOTIONS.items() if list(d) == direction), tuple(travel)


def shape_template(shape: str, area: float, centroid, height: int, width: int) -> np.ndarray:
    """[H W] in [0, 1]: the pixel coverage (4×4 supersampled) of `shape` with the given area and
    centroid, drawn as the renderer draws it."""
    size = {"square": np.sqrt(area), "circle": np.sqrt(4 * area / np.pi), "triangle": np.sqrt(2 * area)}[shape]
    centre = np.asarray(centroid, np.float64)
    if shape == "triangle":  # its centroid lies a sixth of its height below its box's centre
        centre = centre - (size / 6, 0.0)
    s = SUPERSAMPLE
    fine = shape_mask(shape, size * s, centre * s, height * s, width * s)
    return fine.reshape(height, s, width, s).mean(axis=(1, 3))


def shape_errors(weights: np.ndarray) -> dict[str, float] | None:
    """For one frame's object weights [H W] in [0, 1]: each shape's squared error against the best
    of its template and the template blurred once (a decoder's blur), relative to the area. Compared
    in a window around the object (with room for every template of that area)."""
    if (weights >= 0.5).sum() < MIN_PIXELS:
        return None
    rows, cols = np.nonzero(weights >= 0.5)
    margin = int(np.ceil(0.5 * np.sqrt(len(rows)))) + 2
    top, left = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
    window = weights[top:rows.max() + margin + 1, left:cols.max() + margin + 1]
    area = window.sum()
    ys, xs = np.indices(window.shape) + 0.5
    centroid = ((window * ys).sum() / area, (window * xs).sum() / area)
    errors = {}
    for shape in SHAPES:
        template = shape_template(shape, area, centroid, *window.shape)
        errors[shape] = min(((window - t) ** 2).sum() for t in (template, box_blur(template))) / area
    return errors


def measure_shape(weights: np.ndarray) -> tuple[str, dict[str, float]]:
    """The shape whose templates fit the object best, on average over SHAPE_FRAMES frames spread
    over the clip."""
    chosen = np.unique(np.linspace(0, len(weights) - 1, SHAPE_FRAMES).round().astype(int))
    per_frame = [e for e in map(shape_errors, weights[chosen]) if e is not None]
    if not per_frame:
        return NONE, {}
    total = {shape: float(np.mean([e[shape] for e in per_frame])) for shape in SHAPES}
    return min(total, key=total.get), total


def measure(frames) -> Measurement:
    """Every attribute of a clip, uint8 [T H W 3], from its pixels alone."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
        raise ValueError(f"expected uint8 frames [T≥2, H, W, 3], got {frames.dtype} {frames.shape}")
    background_rgb = np.median(border_pixels(frames).astype(np.float64), axis=0)
    colour_rgb, weights = object_weights(frames, background_rgb)
    motion, travel = measure_motion(weights)
    shape, errors = measure_shape(weights)
    return Measurement(background=nearest(background_rgb, BACKGROUNDS),
                       colour=NONE if colour_rgb is None else nearest(colour_rgb, COLOURS),
                       motion=motion, shape=shape, background_rgb=tuple(background_rgb.round(1).tolist()),
                       colour_rgb=() if colour_rgb is None else tuple(colour_rgb.round(1).tolist()),
                       travel=tuple(float(v) for v in travel), shape_errors=errors)
