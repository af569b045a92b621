"""Jitted entry points: `encode(model, params, video_or_features)` and `decode(model, params, codes)`.

`model` is a `VideoVQ` (hashable, so it is a static argument); params come from `load_tokenizer`
or `convert_tokenizer`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from landiff_jax.tokenizer.model import VideoVQ


@functools.partial(jax.jit, static_argnames=("model", "num_frames"))
def decode(model: VideoVQ, params, codes, num_frames: int | None = None):
    """Codes [b N] → features [b t h w c] (num_frames defaults to the config's temporal_size)."""
    return model.apply({"params": params}, codes, num_frames, method=VideoVQ.decode_codes)


@functools.partial(jax.jit, static_argnames=("model",))
def _encode_features(model: VideoVQ, params, features):
    return model.apply({"params": params}, features, method=VideoVQ.encode_features)


@functools.partial(jax.jit, static_argnames=("model",))
def _encode_video(model: VideoVQ, params, video):
    return model.apply({"params": params}, video, method=VideoVQ.encode_video)


def encode(model: VideoVQ, params, inputs):
    """uint8 video [b t H W 3] (through Theia) or float features [b t h w c] → codes [b N] int32."""
    inputs = jnp.asarray(inputs)
    if inputs.dtype == jnp.uint8:
        if "feature_extractor" not in params:
            raise ValueError(
                "encoding video needs Theia weights: the params hold no 'feature_extractor' (the tokenizer "
                "file had no 'feature_extractor.model.backbone.*' keys); pass theia_dir= to load_tokenizer, "
                "or encode precomputed features"
            )
        return _encode_video(model, params, inputs)
    return _encode_features(model, params, inputs)
