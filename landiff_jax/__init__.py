"""landiff-jax: LanDiff text-to-video in JAX/Flax.

    from landiff_jax import LanDiff, Mp4Stream, write_mp4
    pipe = LanDiff.from_checkpoint("ckpts/landiff-jax", dtype="bfloat16")
    result = pipe.generate("A red fox walks through fresh snow.", seed=42)
    write_mp4("fox.mp4", result.videos[0], fps=8)
    with Mp4Stream("fox_long.mp4") as video:  # long videos: frames written as each chunk is decoded
        for chunk in pipe.generate_stream("A red fox walks through fresh snow.", num_frames=193):
            video.write(chunk.frames[0])
        video.commit()

The names below are imported on first use, so that `import landiff_jax.config` (and worker
processes) stay light.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "LanDiff": "landiff_jax.pipeline",
    "GenerateOptions": "landiff_jax.pipeline",
    "GenerateResult": "landiff_jax.pipeline",
    "Chunk": "landiff_jax.pipeline",
    "Mp4Stream": "landiff_jax.video_io",
    "Progress": "landiff_jax.progress",
    "Display": "landiff_jax.progress",
    "write_mp4": "landiff_jax.video_io",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'landiff_jax' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
