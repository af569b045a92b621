"""Parity runner for the `diffusion_train` fixture cases (the original's training forward and
backward of the control DiT).

Builds DiffusionTrainConfig from meta.json, converts the case's two checkpoints with
`load_diffusion`, splits the params as training does, and runs the loss with the stored draws
(text keep, timestep idx, noise) injected, differentiating w.r.t. trainable AND frozen params:
- every array of meta['arrays'] that is not an input or a draw is compared (loss tolerance for
  the losses, activation tolerance for the rest);
- every trainable parameter's gradient is compared, per torch tensor, with grads.npz: the
  converter table maps each torch key to our parameter (a stacked layer slice) and its transform
  brings the torch gradient to our layout; the tolerance is meta's "atol X + rtol Y relative to
  each tensor's max |grad|";
- the trainable set must be exactly the original's requires_grad set (grads.npz keys), keys whose
  grad was None must hold zeros and have no parameter here, and the frozen params' gradient must
  be exactly zero.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from landiff_jax.diffusion.convert import diffusion_rules, load_diffusion
from landiff_jax.diffusion.losses import Draws, diffusion_loss, split_params
from landiff_jax.diffusion.original import diffusion_train_config
from landiff_jax.parity.harness import (
    Check,
    Tolerance,
    channels_first,
    channels_last,
    compare,
    load_case,
    tensor_max_tolerance,
)
from landiff_jax.tokenizer.original import tokenizer_config_from_overrides

INPUTS = ("x0", "text_context", "codes", "tokenizer_features_input")
DRAWS = ("text_keep", "timestep_idx", "noise")
LOSSES = ("loss", "per_sample_loss")


def _tolerance(meta_tol: dict, name: str) -> Tolerance:
    group = meta_tol.get("loss" if name in LOSSES else "activations", {})
    return Tolerance(group.get("atol", 1e-4), group.get("rtol", 1e-4))


def _ours(aux: dict) -> dict[str, np.ndarray]:
    """Our intermediates in the fixture's layout (channels before the spatial axes)."""
    out = {k: np.asarray(aux[k]) for k in ("crossattn", "alphas_cumprod_sqrt", "sigma_table", "loss_weight",
                                           "per_sample_loss", "loss")}
    for k in ("semantic_feature", "tokenizer_features", "noised_input", "network_output", "denoiser_output",
              "loss_model_output", "loss_target"):
        out[k] = channels_first(aux[k])
    up = channels_first(aux["upsampled_features"])  # [b t c H W]; the original's is [(b t) c H W]
    out["upsampled_features"] = up.reshape(-1, *up.shape[2:])
    out["control_outputs"] = np.asarray(aux["dit"]["control_layer_outputs"])  # [N b s d]
    return out


def run(case_dir: Path, meta: dict) -> list[Check]:
    with jax.default_matmul_precision("highest"):
        return _run(case_dir, meta)


def _run(case_dir: Path, meta: dict) -> list[Check]:
    _, arrays = load_case(case_dir)
    config = meta["config"]
    tokenizer_cfg = tokenizer_config_from_overrides(config["tokenizer_build_tokenizer_overrides"])
    cfg = diffusion_train_config(config, tokenizer_cfg)
    params, _ = load_diffusion(case_dir / "CogVideoX-2b-sat" / "transformer", case_dir / "diffusion", cfg.dit,
                               tokenizer_cfg)
    trainable, frozen = split_params(params, "control")
    batch = {"latent": channels_last(arrays["x0"]), "text_embedding": arrays["text_context"],
             "codes": arrays["codes"].astype(np.int32)}
    draws = Draws(arrays["text_keep"] > 0.5, arrays["timestep_idx"].astype(np.int32), channels_last(arrays["noise"]))

    loss_fn = functools.partial(diffusion_loss, cfg, collect=True)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))
    (_, aux), (grads, frozen_grads) = grad_fn(trainable, frozen, batch, draws)

    checks: list[Check] = []
    tol = meta.get("tolerance", {})
    ours = _ours(aux)
    for name in meta["arrays"]:
        if name in INPUTS or name in DRAWS:
            continue
        if name not in ours:
            checks.append(Check(name, False, float("inf"), float("inf"), "not computed by the runner"))
            continue
        checks.append(compare(name, ours[name], arrays[name], _tolerance(tol, name)))
    checks += _grad_checks(cfg, tokenizer_cfg, meta, case_dir, grads)
    frozen_max = max((float(np.max(np.abs(g))) for g in jax.tree.leaves(frozen_grads)), default=0.0)
    checks.append(Check("frozen_params_grad", frozen_max == 0.0, frozen_max, float(frozen_max > 0)))
    return checks


def _grad_checks(cfg, tokenizer_cfg, meta: dict, case_dir: Path, grads) -> list[Check]:
    with np.load(case_dir / meta.get("grads", {}).get("file", "grads.npz"), allow_pickle=False) as z:
        expected = {k: z[k] for k in z.files}
    flat = traverse_util.flatten_dict(grads, sep="/")
    rules = [r for r in diffusion_rules(cfg.dit, tokenizer_cfg) if r.param in flat]
    checks = []
    for rule in rules:
        for i, key in enumerate(rule.key_list):
            if key not in expected:
                checks.append(Check(f"grad {key}", False, float("inf"), float("inf"),
                                    f"trainable here ({rule.param}) but not in grads.npz"))
                continue
            want = rule.transform.apply(np.asarray(expected[key], np.float32))
            got = np.asarray(flat[rule.param][i] if rule.stacked else flat[rule.param])
            checks.append(compare(f"grad {key}", got, want, tensor_max_tolerance(meta["tolerance"]["grads"], want)))
    mapped = {key for r in rules for key in r.key_list}
    unmapped = sorted(set(flat) - {r.param for r in rules})
    grad_none = set(meta.get("grads", {}).get("params_with_grad_None", []))
    extra = sorted(k for k in expected if k not in mapped)
    bad = [k for k in extra if k not in grad_none or np.any(expected[k] != 0)]
    problems = [f"{k} (trainable in the original, no parameter here)" for k in bad]
    problems += [f"{p} (trainable here, no torch key)" for p in unmapped]
    checks.append(Check("trainable_set", not problems, float(len(problems)), float(len(problems)),
                        "; ".join(problems[:3])))
    return checks
