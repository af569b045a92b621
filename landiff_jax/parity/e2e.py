"""Parity runner for component `e2e`: a whole released-layout tree through the conversion tool and
the pipeline a user runs, compared at every hand-off.

The tree is converted exactly as `tools/convert.py` does (checksums verified) into a temporary
directory, loaded with `LanDiff.from_checkpoint`, and run with greedy LM sampling and the
case's captured diffusion noise injected. Each stage consumes what the previous stage of OUR
pipeline produced (codes → semantic feature → samples → video), not the stored arrays.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from landiff_jax import vae
from landiff_jax.diffusion.schedule import step_schedule
from landiff_jax.lm import layout as L
from landiff_jax.parity.harness import Check, channels_first, channels_last, compare, load_case, to_ncthw, tolerance_for
from landiff_jax.pipeline import GenerateOptions, LanDiff
from landiff_jax.release import convert_release
from landiff_jax.text.encoders import encode_for_lm, encode_ids


def _options(meta: dict) -> GenerateOptions:
    ar = meta["sampling"]["lm"]["ARSampleCfg"]
    if ar.get("use_gt_first_frame") or ar.get("teacher_forcing"):
        raise ValueError("the e2e runner covers plain guided LM sampling")
    return GenerateOptions(lm_guidance=ar["cfg"], temperature=ar["temperature"], top_k=ar.get("top_k"),
                           top_p=ar.get("top_p"), greedy=True, motion_score=ar["motion_score"],
                           steps=meta["sampling"]["diffusion"]["num_steps"])


def _run_pipeline(pipe: LanDiff, meta: dict, expected: dict) -> dict:
    prompt = [meta["prompt"]]
    options = _options(meta)
    t = meta["sampling"]["lm"]["ARSampleCfg"]["num_frames"]
    out: dict = {}

    # LM side: Flan-T5 (left padding, mask) → guided greedy sampling, traced per step
    tok_lm, cfg = pipe.tokenizers["t5_lm"], pipe.cfg
    out["lm_t5_input_ids"], out["lm_t5_attention_mask"] = tok_lm.encode_lm(prompt)
    out["lm_t5_last_hidden_state"], _ = encode_for_lm(tok_lm, pipe.params["t5_lm"], cfg.t5_lm, prompt)
    sampled = pipe.sample_codes(prompt, t, options, trace=True)
    layout = L.frame_layout(cfg.lm.codebook_size, cfg.lm.iframe_tokens, cfg.lm.pframe_tokens, cfg.lm.segment_length, t)
    out["lm_step_logits_cond_uncond"] = sampled.logits
    out["lm_step_logits_guided"] = sampled.guided[:, 0]
    out["lm_step_constrained"] = layout.constrained
    out["lm_step_argmax"] = sampled.draws[0]
    codes = np.asarray(sampled.codes)
    out["lm_codes"] = codes.reshape(-1)
    out["semantic_token"] = codes.reshape(1, 1, -1)

    # diffusion side: T5 v1.1 context (right padding, no mask), zeros as uncond, semantic feature
    tok_dit, length = pipe.tokenizers["t5_dit"], cfg.dit.text_length
    out["dit_t5_input_ids"] = tok_dit.encode_diffusion(prompt, length)
    out["dit_t5_negative_input_ids"] = tok_dit.encode_diffusion([""], length)
    out["dit_t5_negative_last_hidden_state"] = encode_ids(pipe.params["t5_dit"], cfg.t5_dit,
                                                          out["dit_t5_negative_input_ids"], None)
    context, uncond = pipe.text_context(prompt)
    out["cond_context"], out["uncond_context"] = context, uncond
    feature, parts = pipe.semantic_feature(codes, t, collect=True)
    out["tokenizer_features"] = channels_first(parts["tokenizer_features"])
    out["upsampled_features"] = channels_first(parts["upsampled_features"][0])
    out["semantic_feature"] = channels_first(feature)

    # guided sampling with the captured draws injected, then the chunked VAE decode
    samples, steps = pipe.sample_latents(context, uncond, feature, options,
                                         init_noise=channels_last(expected["init_noise"]),
                                         step_noise=channels_last(expected["step_noise"]), trajectory=True)
    for name, value in steps.items():
        out[name] = channels_first(value)
    schedule = step_schedule(pipe.sampler_config(options))
    out.update(schedule_alpha_cumprod_sqrt=schedule.alphas, schedule_timesteps=schedule.timesteps,
               step_alpha=schedule.step_alpha, step_alpha_next=schedule.step_alpha_next, step_idx=schedule.step_idx,
               step_timestep=schedule.step_timestep, step_cfg_scale=schedule.cfg_scale,
               step_cfg_step_index=schedule.cfg_step_index)
    out["samples"] = channels_first(samples)
    out["decode_latent_input"] = to_ncthw(samples)
    out["vae_decoder_input"] = to_ncthw(vae.to_decoder_space(cfg.vae, samples))
    decoded = vae.decode_latents(pipe.params["vae"], cfg.vae, samples)
    out["decoded_chunked"] = to_ncthw(decoded)
    out["video"] = to_ncthw(vae.to_unit(decoded))
    return out


def release_dirs(case_dir: Path, meta: dict) -> tuple[Path, Path]:
    """(the released tree, the Flan-T5 dir) as the case's meta.json places them."""
    config = meta["config"]
    t5_v1_1 = Path(config.get("t5_v1_1_xxl", {}).get("dir", "ckpts/LanDiff/CogVideoX-2b-sat/t5-v1_1-xxl"))
    return case_dir / t5_v1_1.parents[1], case_dir / config.get("flan_t5", {}).get("dir", "flan-t5")


def run(case_dir: Path, meta: dict) -> list[Check]:
    _, expected = load_case(case_dir)
    tolerance = meta.get("tolerance", {})
    skip = set(tolerance.get("inputs_to_inject_not_to_compare", ["init_noise", "step_noise"]))
    with tempfile.TemporaryDirectory() as tmp:
        converted = convert_release(*release_dirs(case_dir, meta), Path(tmp) / "converted", meta["config"],
                                    progress=lambda s: None)
        pipe = LanDiff.from_checkpoint(converted)
    actual = _run_pipeline(pipe, meta, expected)
    actual["step_noise_roles"] = expected_roles(pipe.sampler_config(_options(meta)).num_steps)
    return [
        compare(name, actual[name], want, tolerance_for(tolerance, name)) if name in actual
        else Check(name, False, float("inf"), float("inf"), "not produced by the e2e runner")
        for name, want in expected.items() if name not in skip
    ]


def expected_roles(num_steps: int) -> np.ndarray:
    """The original's draw order: step 0 draws one ε, each middle step two, the last none."""
    roles = ["step0_x_standard_noise"]
    for i in range(1, num_steps - 1):
        roles += [f"step{i}_x_standard_noise", f"step{i}_x_advanced_noise"]
    return np.array(roles)

