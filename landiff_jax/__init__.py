"""landiff-jax: LanDiff text-to-video in JAX/Flax."""

__version__ = "0.1.0"
