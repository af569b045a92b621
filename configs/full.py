"""The released system: 49 frames of 480×720 from 13 semantic frames (LanDiff as published).

    python tools/generate.py --config configs/full.py --checkpoint ckpts/landiff-jax --prompt "..."
"""

from landiff_jax.config import LanDiffConfig


def get_config() -> LanDiffConfig:
    return LanDiffConfig.full()
