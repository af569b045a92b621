"""Parity runners for the `dit` and `sampler` fixture cases (see tools/parity.py).

Both build the configs from meta.json, convert the case's two checkpoints with
`load_diffusion`, compute the semantic feature from the stored semantic tokens through the
tokenizer decoder and the semantic conditioner, then
- dit: run the control DiT (with intermediates) on the stored x / timesteps / context and the
  denoiser on the stored den_x / den_sigma / den_idx;
- sampler: run the jitted guided sampler with the stored draws injected.
Fixture arrays are B,T,C,H,W; ours are channels-last and are moved back before comparing.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from landiff_jax.diffusion import original as diffusion_original
from landiff_jax.diffusion.conditioner import semantic_feature
from landiff_jax.diffusion.convert import load_diffusion
from landiff_jax.diffusion.denoiser import denoise, video_scalings
from landiff_jax.diffusion.dit import ControlDiT
from landiff_jax.diffusion.sampler import sample
from landiff_jax.diffusion.schedule import alphas_cumprod_shifted, denoiser_sigma_table, step_schedule
from landiff_jax.parity.harness import Check, channels_first, channels_last, compare, load_case, tolerance_for
from landiff_jax.tokenizer import original as tokenizer_original


def _setup(case_dir: Path, meta: dict):
    """Configs, converted params, the case's arrays, a check list and a `check(name, ours)`."""
    _, arrays = load_case(case_dir)
    config = meta["config"]
    cfg = diffusion_original.dit_config(config)
    tokenizer_cfg = tokenizer_original.tokenizer_config_from_overrides(config["tokenizer_build_tokenizer_overrides"])
    params, _ = load_diffusion(case_dir / "CogVideoX-2b-sat" / "transformer", case_dir / "diffusion", cfg,
                               tokenizer_cfg)
    checks: list[Check] = []

    def check(name, actual):
        checks.append(compare(name, actual, arrays[name], tolerance_for(meta.get("tolerance", {}), name)))

    return cfg, tokenizer_cfg, diffusion_original.sampler_config(config), params, arrays, checks, check


def _semantic(cfg, tokenizer_cfg, params, arrays):
    codes = np.asarray(arrays["semantic_tokens"]).reshape(1, -1)  # [1, 1, N] as registered
    return semantic_feature(params, cfg, tokenizer_cfg, codes, collect=True)


def run_dit(case_dir: Path, meta: dict) -> list[Check]:
    with jax.default_matmul_precision("highest"):
        return _run_dit(case_dir, meta)


def run_sampler(case_dir: Path, meta: dict) -> list[Check]:
    with jax.default_matmul_precision("highest"):
        return _run_sampler(case_dir, meta)


def _run_dit(case_dir: Path, meta: dict) -> list[Check]:
    cfg, tokenizer_cfg, sampler_cfg, params, arrays, checks, check = _setup(case_dir, meta)

    feature, parts = _semantic(cfg, tokenizer_cfg, params, arrays)
    check("tokenizer_features", channels_first(parts["tokenizer_features"]))
    up = channels_first(parts["upsampled_features"])  # [1 t c H W]; the original's is [(1 t) c H W]
    check("upsampled_features", up.reshape(-1, *up.shape[2:]))
    check("semantic_feature", channels_first(feature))

    model = ControlDiT(cfg, collect=True)
    apply = jax.jit(lambda p, x, t, ctx, sem: model.apply({"params": p}, x, t, ctx, sem))
    output, inter = apply(params["dit"], channels_last(arrays["x"]), arrays["timesteps"], arrays["context"], feature)
    check("t_emb_sinusoidal", inter["main_t_emb_sinusoidal"])
    for name in ("control_time_emb", "main_time_emb", "control_embed_tokens", "main_embed_tokens",
                 "control_layer_outputs", "main_layer_outputs"):
        check(name, inter[name])
    check("output", channels_first(output))

    table = denoiser_sigma_table(sampler_cfg.denoiser_num_idx, sampler_cfg.denoiser_shift_scale)
    check("denoiser_sigmas_table", table)
    scalings = video_scalings(arrays["den_sigma"], arrays["den_idx"], table)
    for name, value in zip(("den_sigma_quantized", "den_c_skip", "den_c_out", "den_c_in", "den_c_noise"), scalings):
        check(name, value)
    den_x = channels_last(arrays["den_x"])
    network_outputs = []

    def network(x_in, c_noise):  # the same compiled DiT as above
        network_outputs.append(apply(params["dit"], x_in, c_noise, arrays["context"], feature)[0])
        return network_outputs[-1]

    check("den_output", channels_first(denoise(network, den_x, scalings)))
    check("den_network_output", channels_first(network_outputs[0]))
    return checks


def _run_sampler(case_dir: Path, meta: dict) -> list[Check]:
    cfg, tokenizer_cfg, sampler_cfg, params, arrays, checks, check = _setup(case_dir, meta)

    feature, _ = _semantic(cfg, tokenizer_cfg, params, arrays)
    check("semantic_feature", channels_first(feature))
    samples, steps = sample(
        params["dit"], cfg, sampler_cfg, arrays["cond_context"], arrays["uncond_context"], feature,
        init_noise=channels_last(arrays["init_noise"]), step_noise=channels_last(arrays["step_noise"]),
        trajectory=True)
    for name, value in steps.items():
        check(name, channels_first(value))
    check("samples", channels_first(samples))

    schedule = step_schedule(sampler_cfg)
    check("schedule_alpha_cumprod_sqrt", schedule.alphas)
    check("schedule_timesteps", schedule.timesteps)
    check("step_alpha", schedule.step_alpha)
    check("step_alpha_next", schedule.step_alpha_next)
    check("step_idx", schedule.step_idx)
    check("step_timestep", schedule.step_timestep)
    check("step_cfg_scale", schedule.cfg_scale)
    check("step_cfg_step_index", schedule.cfg_step_index)
    check("alphas_cumprod_shifted_1000", alphas_cumprod_shifted(
        sampler_cfg.denoiser_num_idx, sampler_cfg.denoiser_shift_scale, sampler_cfg.linear_start,
        sampler_cfg.linear_end))
    check("sqrt_alphas_cumprod_zsnr_1000", denoiser_sigma_table(sampler_cfg.denoiser_num_idx,
                                                                sampler_cfg.denoiser_shift_scale))
    return checks
