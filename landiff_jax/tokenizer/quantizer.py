"""Vector quantizer (vector_quantize_pytorch's `VectorQuantize`, Euclidean; inference forward).

Training (EMA codebook, dead codes, rotation trick) lives in `codebook.py` and `losses.py`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.nn import dense
from landiff_jax.tokenizer.config import TokenizerConfig

_HIGHEST = jax.lax.Precision.HIGHEST


def euclidean_distances(zp, codebook):
    """Distance of vectors [..., d] to every code of codebook [K, d] → [..., K], float32 at the
    highest matmul precision: sqrt(max(|z|² + |e|² − 2 z·e, 0)) as the original computes it."""
    codes = codebook.astype(jnp.float32)
    cross = jnp.einsum("...d,kd->...k", zp, codes, precision=_HIGHEST)
    sq = jnp.sum(zp * zp, axis=-1, keepdims=True) + jnp.sum(codes * codes, axis=-1) - 2.0 * cross
    return jnp.sqrt(jnp.maximum(sq, 0.0))


class VectorQuantizer(nn.Module):
    """project_in → nearest code (Euclidean) → code → project_out.

    The projections exist only when codebook_dim differs from token_size. Distances are computed
    in float32 at the highest matmul precision so that codes do not depend on the device.
    """

    config: TokenizerConfig

    def setup(self):
        cfg = self.config
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        if cfg.has_vq_projection:
            self.project_in = dense(cfg.codebook_dim, (None, None), name="project_in", **kw)
            self.project_out = dense(cfg.token_size, (None, "embed"), name="project_out", **kw)
        self.codebook = self.param(
            "codebook",
            nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", None)),
            (cfg.codebook_size, cfg.codebook_dim),
            cfg.param_dtype,
        )

    def project(self, z):
        """[..., token_size] → [..., codebook_dim] (float32)."""
        z = self.project_in(z) if self.config.has_vq_projection else z
        return z.astype(jnp.float32)

    def distances(self, zp):
        """Euclidean distance of projected vectors [..., codebook_dim] to every code → [..., K]."""
        return euclidean_distances(zp, self.codebook)

    def unproject(self, vectors):
        """Codebook-space vectors [..., codebook_dim] → project_out(vectors) [..., token_size]."""
        vectors = vectors.astype(self.config.dtype)
        return self.project_out(vectors) if self.config.has_vq_projection else vectors

    def lookup(self, codes):
        """int codes [...] → project_out(codebook[codes]) [..., token_size]."""
        return self.unproject(jnp.take(self.codebook, codes, axis=0))

    def __call__(self, z):
        """z [..., token_size] → (codes [...] int32, distances [..., K], projected [..., codebook_dim])."""
        projected = self.project(z)
        dist = self.distances(projected)
        return jnp.argmin(dist, axis=-1).astype(jnp.int32), dist, projected
