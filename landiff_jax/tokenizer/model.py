"""VideoVQ: the semantic video tokenizer (Theia → TiTok encoder → VQ codes → TiTok decoder).

Use through `model.apply({'params': params}, ..., method=...)`:
  encode_features(features [b t h w c]) → codes [b N] int32
  encode_video(video uint8 [b t H W 3]) → codes [b N]      (needs Theia weights)
  extract_features(video uint8 [b t H W 3]) → features [b t h w c]
  decode_codes(codes [b N] int, num_frames) → features [b t h w c]
  project_features / decode_vectors: the two halves of a training step (see losses.py)
with N = I + (T−1)·P. Every method is jit-compatible with `num_frames` static. The `trace_*`
methods (with `trace=True`) return the intermediates the parity checks compare.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.tokenizer.quantizer import VectorQuantizer
from landiff_jax.tokenizer.theia import TheiaBackbone, extract_features
from landiff_jax.tokenizer.titok import TiTokDecoder, TiTokEncoder


class VideoVQ(nn.Module):
    config: TokenizerConfig
    trace: bool = False  # keep every layer's output for the trace_* methods

    def setup(self):
        cfg = self.config
        self.encoder = TiTokEncoder(cfg, self.trace)
        self.quantizer = VectorQuantizer(cfg)
        self.decoder = TiTokDecoder(cfg, self.trace)
        if cfg.theia is not None:
            self.feature_extractor = TheiaBackbone(cfg.theia, dtype=cfg.dtype, param_dtype=cfg.param_dtype)

    # ---- encoding ------------------------------------------------------------------------
    def extract_features(self, video):
        """uint8 video [b t H W 3] → Theia features [b t h w c] on the tokenizer's grid."""
        return self._extract(video)[0]

    def encode_features(self, features):
        """Features [b t h w c] → codes [b N] int32."""
        latent, _ = self.encoder(features)
        return self.quantizer(latent)[0]

    def project_features(self, features):
        """Features [b t h w c] → (continuous latent [b N token_size], projected [b N codebook_dim]):
        the encoder side of a training step, before any code is chosen."""
        latent, _ = self.encoder(features)
        return latent, self.quantizer.project(latent)

    def encode_video(self, video):
        """uint8 video [b t H W 3] → codes [b N] int32."""
        return self.encode_features(self.extract_features(video))

    # ---- decoding ------------------------------------------------------------------------
    def decode_codes(self, codes, num_frames: int | None = None):
        """Codes [b N] (N = I + (T−1)·P) → features [b t h w c]; num_frames defaults to temporal_size.

        Codes must lie in [0, codebook_size): out-of-range codes give NaN features."""
        num_frames = self.config.temporal_size if num_frames is None else num_frames
        return self.decoder(self.quantizer.lookup(codes), num_frames)[0]

    def decode_vectors(self, vectors, num_frames: int):
        """Codebook-space vectors [b N codebook_dim] → (features [b t h w c], project_out(vectors)
        [b N token_size]): the decoder side of a training step (vectors carry the quantizer's gradient)."""
        quantized = self.quantizer.unproject(vectors)
        return self.decoder(quantized, num_frames)[0], quantized

    # ---- parity traces -------------------------------------------------------------------
    def trace_encode(self, features):
        """Intermediates of `encode_features` (needs trace=True)."""
        self._require_trace()
        latent, aux = self.encoder(features)
        codes, dist, projected = self.quantizer(latent)
        return {
            "enc_ln_pre_out": aux["ln_pre"],
            "enc_layer_outputs": aux["layers"],
            "encoder_out": latent,
            "vq_projected_in": projected,
            "vq_distances": dist,
            "quantized": self.quantizer.lookup(codes),
            "indices": codes,
        }

    def trace_decode(self, codes, num_frames: int):
        """Intermediates of `decode_codes` (needs trace=True)."""
        self._require_trace()
        latent = self.quantizer.lookup(codes)
        decoded, aux = self.decoder(latent, num_frames)
        return {
            "latent_from_indices": latent,
            "dec_embed_out": aux["embed"],
            "dec_ln_pre_out": aux["ln_pre"],
            "dec_layer_outputs": aux["layers"],
            "decoded": decoded,
        }

    def trace_video(self, video):
        """Intermediates of `extract_features` plus the end-to-end codes."""
        features, aux = self._extract(video)
        return {**aux, "features": features, "indices_from_video": self.encode_features(features)}

    # ---- initialisation ------------------------------------------------------------------
    def initialize(self, features, video=None):
        """Touch every submodule (for `model.init`); Theia only when a video is given."""
        codes = self.encode_features(features)
        decoded = self.decode_codes(codes, features.shape[1])
        if video is not None:
            self.extract_features(video)
        return decoded

    def _extract(self, video):
        cfg = self.config
        if cfg.theia is None:
            raise ValueError("this tokenizer config has no Theia feature extractor; encode features instead")
        if tuple(cfg.theia.output_shape) != tuple(cfg.image_size) or cfg.theia.hidden_size != cfg.image_channels:
            raise ValueError(
                f"Theia gives {cfg.theia.hidden_size}-channel features on {cfg.theia.output_shape}, the "
                f"tokenizer expects {cfg.image_channels} channels on {cfg.image_size}"
            )
        return extract_features(self.feature_extractor, video)

    def _require_trace(self):
        if not self.trace:
            raise ValueError("trace_* methods need VideoVQ(config, trace=True)")


def init_inputs(config: TokenizerConfig, num_frames: int = 1, with_video: bool = False):
    """Small dummy inputs for `model.init(rng, *inputs, method=VideoVQ.initialize)`."""
    features = jnp.zeros((1, num_frames, *config.image_size, config.image_channels), config.dtype)
    if not with_video:
        return (features,)
    side = config.theia.patch_size
    return features, jnp.zeros((1, num_frames, side, side, 3), jnp.uint8)
