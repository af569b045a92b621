"""Parity of the tokenizer (`tokenizer` cases) and of Theia feature extraction (`theia` cases).

The model is built from meta.json's config, the case's checkpoint is converted with
`convert_params`, codes and decoded features come from the user-facing `api.encode` /
`api.decode` (batched), and the intermediates from the `trace_*` methods of the same modules.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np

from landiff_jax.convert import read_safetensors
from landiff_jax.parity.harness import Check, channels_first, channels_last, compare, load_case, tolerance_for
from landiff_jax.tokenizer import api, masks
from landiff_jax.tokenizer.convert import convert_params
from landiff_jax.tokenizer.model import VideoVQ
from landiff_jax.tokenizer.original import tokenizer_config


def as_original_latent(x):  # [b n c] -> [b c 1 n] (TiTok's fake 2D layout)
    return np.asarray(x).transpose(0, 2, 1)[:, :, None, :]


def _load(case_dir: Path, meta: dict):
    config = tokenizer_config(meta["config"])
    params, _ = convert_params(read_safetensors(case_dir / meta["checkpoint"]["file"]), config,
                                  source=str(case_dir))
    return config, params


def _jit_method(model: VideoVQ, method, static_argnums=()):
    return jax.jit(functools.partial(model.apply, method=method), static_argnums=static_argnums)


def _checker(meta: dict, expected: dict):
    checks: list[Check] = []

    def check(name: str, actual):
        checks.append(compare(name, actual, expected[name], tolerance_for(meta.get("tolerance", {}), name)))

    return checks, check


def run_tokenizer(case_dir: Path, meta: dict) -> list[Check]:
    _, arrays = load_case(case_dir)
    config, params = _load(case_dir, meta)
    checks, check = _checker(meta, arrays)
    features = channels_last(arrays["features"])
    num_frames = arrays["decoded"].shape[1]
    model, tracer = VideoVQ(config), VideoVQ(config, trace=True)

    check("indices", api.encode(params, model.config, features))
    enc = _jit_method(tracer, VideoVQ.trace_encode)({"params": params}, features)
    for name in ("enc_ln_pre_out", "enc_layer_outputs", "vq_projected_in", "vq_distances", "quantized"):
        check(name, enc[name])
    check("encoder_out", as_original_latent(enc["encoder_out"]))

    codes = arrays["indices"]  # the stored input of index_to_feature
    check("decoded", channels_first(api.decode(params, model.config, codes, num_frames)))
    dec = _jit_method(tracer, VideoVQ.trace_decode, static_argnums=2)({"params": params}, codes, num_frames)
    check("latent_from_indices", as_original_latent(dec["latent_from_indices"]))
    for name in ("dec_embed_out", "dec_ln_pre_out", "dec_layer_outputs"):
        check(name, dec[name])

    check("mask_encoder", masks.encoder_mask(config, num_frames))
    check("mask_decoder", masks.decoder_mask(config, num_frames))
    check("rope_index", np.asarray(masks.rope_positions(config, num_frames)))
    angles = np.asarray(masks.rope_angles(config, num_frames))
    check("rope_freqs_cis", np.stack([np.cos(angles), np.sin(angles)], axis=-1))
    return checks


def run_theia(case_dir: Path, meta: dict) -> list[Check]:
    _, arrays = load_case(case_dir)
    config, params = _load(case_dir, meta)
    checks, check = _checker(meta, arrays)
    video = channels_last(arrays["video"])  # uint8 [b t H W 3]
    trace = _jit_method(VideoVQ(config), VideoVQ.trace_video)({"params": params}, video)
    check("pixel_values", channels_first(trace["pixel_values"]))
    check("vit_pos_embed_interpolated", np.asarray(trace["pos_embed"])[None])
    check("vit_embeddings_out", trace["embeddings"])
    check("vit_last_hidden_state", trace["last_hidden_state"])
    check("features", channels_first(trace["features"]))
    check("indices_from_video", api.encode(params, config, video))
    return checks

