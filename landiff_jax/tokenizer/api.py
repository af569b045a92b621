"""The tokenizer's face: `abstract_params(config)` and the jitted entry points
`encode(params, config, video_or_features)` and `decode(params, config, codes)`.

`config` is a `TokenizerConfig` (hashable, so it is a static argument); params come from
`load_tokenizer` or `convert_params`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.tokenizer.model import VideoVQ, init_inputs


@functools.partial(jax.jit, static_argnames=("config", "num_frames"))
def decode(params, config: TokenizerConfig, codes, num_frames: int | None = None):
    """Codes [b N] → features [b t h w c] (num_frames defaults to the config's temporal_size)."""
    return VideoVQ(config).apply({"params": params}, codes, num_frames, method=VideoVQ.decode_codes)


@functools.partial(jax.jit, static_argnames=("config",))
def _encode_features(params, config: TokenizerConfig, features):
    return VideoVQ(config).apply({"params": params}, features, method=VideoVQ.encode_features)


@functools.partial(jax.jit, static_argnames=("config",))
def _encode_video(params, config: TokenizerConfig, video):
    return VideoVQ(config).apply({"params": params}, video, method=VideoVQ.encode_video)


def encode(params, config: TokenizerConfig, inputs):
    """uint8 video [b t H W 3] (through Theia) or float features [b t h w c] → codes [b N] int32."""
    inputs = jnp.asarray(inputs)
    if inputs.dtype == jnp.uint8:
        if "feature_extractor" not in params:
            raise ValueError(
                "encoding video needs Theia weights: the params hold no 'feature_extractor' (the tokenizer "
                "file had no 'feature_extractor.model.backbone.*' keys); pass theia_dir= to load_tokenizer, "
                "or encode precomputed features"
            )
        return _encode_video(params, config, inputs)
    return _encode_features(params, config, inputs)


def abstract_params(config: TokenizerConfig, *, theia: bool = False, decode_only: bool = False):
    """jax.eval_shape of VideoVQ's params (boxed with logical axis names); no memory is used."""
    model = VideoVQ(config)
    if decode_only:
        codes = jnp.zeros((1, config.num_codes(1)), jnp.int32)
        init = lambda: model.init(jax.random.key(0), codes, 1, method=VideoVQ.decode_codes)
    else:
        inputs = init_inputs(config, with_video=theia)
        init = lambda: model.init(jax.random.key(0), *inputs, method=VideoVQ.initialize)
    return jax.eval_shape(init)["params"]
