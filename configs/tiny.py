"""A few-MB system for tests and the CPU demo: 9 frames of 64×96 from 3 semantic frames.

    python tools/generate.py --config configs/tiny.py --random_weights
"""

from landiff_jax.config import LanDiffConfig


def get_config() -> LanDiffConfig:
    return LanDiffConfig.tiny()
