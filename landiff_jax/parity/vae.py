"""Parity of the VAE against fixture cases (`component: vae`).

The case's checkpoint goes through `load_vae`, the model is built from meta.json's config,
and every array the model produces is compared: the posterior (from the stored [0, 1] video
through `from_unit`), the sampled latent with the stored noise injected, both decode paths
(fed the stored latents: the decode stage's input), the post-processed frames, and, where
`intermediates.npz` exists, the stage-boundary outputs of the single-call encode and decode.
Fixtures are NCTHW; they are converted to channels-last at this boundary only.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import jax
import numpy as np

from landiff_jax.parity.harness import Check, Tolerance, compare, from_ncthw, load_case, to_ncthw, tolerance_for
from landiff_jax.vae import api
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.convert import load_vae
from landiff_jax.vae.model import Decoder, Encoder
from landiff_jax.vae.original import vae_config


def tolerance(meta: dict, name: str) -> Tolerance:
    """meta['tolerance'], honouring `per_array_hint` ({'a/b_*': {atol, rtol}})."""
    tol = meta.get("tolerance", {})
    for patterns, hint in tol.get("per_array_hint", {}).items():
        if any(fnmatch.fnmatch(name, p) for p in patterns.split("/")):
            return Tolerance(hint.get("atol", 1e-4), hint.get("rtol", 1e-4))
    return tolerance_for(tol, name)


def module_outputs(module, params, x) -> dict:
    """Every direct submodule's output of one call ({name: array}), first element of tuples."""
    _, state = jax.jit(lambda p, x: module.apply({"params": p}, x, capture_intermediates=True,
                                                 mutable=["intermediates"]))(params, x)
    out = {}
    for name, value in state["intermediates"].items():
        if name != "__call__":
            y = value["__call__"][0]
            out[name] = y[0] if isinstance(y, tuple) else y
    return out


def intermediate_name(fixture_name: str) -> tuple[str, str]:
    """'enc.down0.block1' -> ('encoder', 'down_0_block_1'); 'dec.mid.block_2' -> ('decoder', 'mid_block_2')."""
    part, rest = fixture_name.split(".", 1)
    rest = re.sub(r"(down|up|block)(\d)", r"\1_\2", rest).replace(".", "_")
    return {"enc": "encoder", "dec": "decoder"}[part], rest


def check_intermediates(case_dir: Path, meta: dict, cfg: VAEConfig, params, video, latent) -> list[Check]:
    """Stage-boundary outputs of the single-call encode and decode (intermediates.npz)."""
    with np.load(case_dir / "intermediates.npz") as z:
        expected = {k: z[k] for k in z.files}
    ours = {"encoder": module_outputs(Encoder(cfg), params["encoder"], video),
            "decoder": module_outputs(Decoder(cfg), params["decoder"], api.to_decoder_space(cfg, latent))}
    checks = []
    for name, value in expected.items():
        part, module = intermediate_name(name)
        checks.append(compare(name, to_ncthw(ours[part][module]), value, tolerance(meta, "decoded_full")))
    return checks


def run(case_dir: Path, meta: dict) -> list[Check]:
    _, arrays = load_case(case_dir)
    cfg = vae_config(meta["config"])
    params, _, report = load_vae(case_dir / meta["checkpoint"]["file"], cfg)
    checks = [Check("ignored loss.* keys", report.ignored["loss"] == len(meta["checkpoint"].get("ignored_keys", [])),
                    0.0, 0.0, report.summary())]

    def check(name, actual):
        if name in arrays:
            checks.append(compare(name, to_ncthw(actual), arrays[name], tolerance(meta, name)))

    def decode_both(latent_name, full_name, chunked_name, **kw):
        latent = from_ncthw(arrays[latent_name])
        full = api.decode_full(params, cfg, latent)
        chunked = api.decode_latents(params, cfg, latent, **kw)
        check(full_name, full)
        check(chunked_name, chunked)
        return full, chunked

    if "video_in_01" in arrays:
        video = api.from_unit(from_ncthw(arrays["video_in_01"]))
        check("video_in", video)
        moments = api.moments(params, cfg, video)
        mean, logvar = api.split_moments(cfg, moments)
        check("moments", moments)
        check("mean", mean)
        check("logvar", logvar)
        if "noise" in arrays:
            check("latent_engine", api.sample_latents(cfg, mean, logvar, noise=from_ncthw(arrays["noise"])))
        check("latent_mode", api.encode_mode(params, cfg, video))

        if (case_dir / "intermediates.npz").exists():
            checks += check_intermediates(case_dir, meta, cfg, params, video, from_ncthw(arrays["latent_engine"]))

    check("latent_decoder_input", api.to_decoder_space(cfg, from_ncthw(arrays["latent_engine"])))
    full, chunked = decode_both("latent_engine", "decoded_full", "decoded_chunked")
    check("video_out_01", api.to_unit(chunked))
    check("video_out_full_01", api.to_unit(full))
    if "latent_mode" in arrays:
        decode_both("latent_mode", "decoded_mode_full", "decoded_mode_chunked")
    if "latent_engine_evenT" in arrays:
        decode_both("latent_engine_evenT", "decoded_full_evenT", "decoded_chunked_evenT", drop_last_even_frame=True)
    return checks
