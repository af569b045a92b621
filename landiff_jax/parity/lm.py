"""Parity runner for component `lm`: the case's prompt through the LM-side T5 (tokenizer and
encoder of the case's `t5/` dir), the LM converted from its safetensors, and the jitted
sampler (greedy, as the fixtures patch multinomial to argmax), traced per step."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from landiff_jax.lm import layout as L
from landiff_jax.lm.convert import load_lm
from landiff_jax.lm.model import SemanticLM
from landiff_jax.lm.original import lm_config
from landiff_jax.lm.sampler import SampleOptions, micro_values, sample, step_logits
from landiff_jax.nn import rope_1d_angles, timestep_embedding
from landiff_jax.parity.harness import Check, compare, load_case, tolerance_for
from landiff_jax.text.convert import load_t5
from landiff_jax.text.encoders import encode_for_lm
from landiff_jax.text.tokenizer import T5TextTokenizer


def _options(args: dict) -> SampleOptions:
    if args.get("use_gt_first_frame") or args.get("teacher_forcing") or args.get("predict_eos"):
        raise ValueError("the lm runner covers plain guided sampling "
                         "(no gt first frame / teacher forcing / predict_eos)")
    return SampleOptions.create(guidance_scale=args["guidance_scale"], temperature=args["temperature"],
                                top_k=args.get("top_k"), top_p=args.get("top_p"), greedy=True)


def _actual(case_dir: Path, meta: dict) -> dict:
    args = meta["sample_args"]
    inputs = args["inputs"]
    t5_dir = case_dir / "t5"
    tokenizer = T5TextTokenizer(t5_dir)
    t5_cfg, t5_params = load_t5(t5_dir)
    ids, _ = tokenizer.encode_lm(inputs["caption"])
    hidden, mask = encode_for_lm(tokenizer, t5_params, t5_cfg, inputs["caption"])

    cfg = lm_config(meta["config"], text_dim=t5_cfg.d_model)
    params = load_lm(case_dir / meta["checkpoint"]["file"], cfg)
    options = _options(args)
    num_frames = args["num_frames"]
    out = sample(params, cfg, hidden, mask, num_frames=num_frames, motion_score=inputs["motion_score"],
                 frames=inputs["frames"], options=options, trace=True)

    layout = L.frame_layout(cfg.codebook_size, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length, num_frames)
    batch, n = mask.shape
    m = len(cfg.micro_keys)
    micro = micro_values(cfg, inputs["frames"], inputs["motion_score"], batch)
    model, variables = SemanticLM(cfg), {"params": params}
    cond, null = model.apply(variables, hidden, method=lambda lm, h: lm.text_cond(h))
    soi = jnp.full((batch, 1), layout.vocab[L.SOI], jnp.int32)
    prefix, _ = model.apply(variables, hidden, mask, micro, soi, options.guidance, method=SemanticLM.prefix)
    probs = jax.vmap(lambda g, a: jax.nn.softmax(step_logits(g, a, options, layout.vocab)))(
        out.guided[:, 0], jnp.asarray(layout.allow))
    kinds = L.position_kinds(layout, n, m)
    full_len = len(kinds)
    prefix_tokens = L.position_tokens(layout, n, m, np.zeros(layout.steps))[: L.prefix_len(layout, n, m)]
    forced = np.zeros(full_len, bool)
    forced[full_len - layout.steps:] = layout.forced >= 0
    angles = rope_1d_angles(np.arange(full_len), cfg.head_dim, cfg.rope_theta)
    return {
        "input_ids": ids,
        "attention_mask": mask.astype(np.int64),
        "t5_last_hidden_state": hidden,
        "cond_embedding": cond[0],
        "uncond_embedding": jnp.broadcast_to(null, cond[0].shape),
        "micro_timestep_embedding": timestep_embedding(micro, cfg.micro_freq_dim),
        "micro_cond": model.apply(variables, micro, method=lambda lm, v: lm.micro_cond(v)),
        "prefix_features": prefix,
        "prefix_tokens": np.stack([prefix_tokens] * prefix.shape[0]),
        "step_logits_cond_uncond": out.logits,
        "step_logits_guided": out.guided[:, 0],
        "step_probs": probs,
        "step_allowed": layout.allowed_mask(),
        "step_constrained": layout.constrained.astype(np.int64),
        "step_argmax": out.draws[0],
        "position_tokens": L.position_tokens(layout, n, m, out.tokens[0]),
        "position_forced": forced,
        "rope_freqs_cis": jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1),
        "sampled_codes": out.codes,
        "position_kinds": np.array(kinds),
    }


def run(case_dir: Path, meta: dict) -> list[Check]:
    _, expected = load_case(case_dir)
    expected["position_kinds"] = np.array(meta["token_layout"]["position_kinds"])
    actual = _actual(case_dir, meta)
    tolerance = meta.get("tolerance", {})
    return [
        compare(name, actual[name], want, tolerance_for(tolerance, name)) if name in actual
        else Check(name, False, float("inf"), float("inf"), "not produced by the lm runner")
        for name, want in expected.items()
    ]
