"""Parity of the tokenizer's training step (`tokenizer_train` cases).

The training config comes from meta.json's `config` (`tokenizer.original.tokenizer_train_config`), the
parameters from `convert_params` and the codebook state from `convert_train_state` on the case's
checkpoint. The original's dead-code draw (`dead_code_sample_index`) is injected. Losses, metrics,
the new codebook, the intermediates and the gradients come from one jitted `losses.forward`
(the body of `inner_loss` / `train_loss`); gradients are compared per parameter after converting
grads.npz with the same converter table.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from landiff_jax.convert import read_safetensors
from landiff_jax.parity.harness import (
    Check,
    Tolerance,
    channels_first,
    channels_last,
    compare,
    load_case,
    tensor_max_tolerance,
    tolerance_for,
)
from landiff_jax.parity.tokenizer import as_original_latent
from landiff_jax.tokenizer import codebook, losses
from landiff_jax.tokenizer.config import TokenizerTrainConfig
from landiff_jax.tokenizer.convert import convert_params, convert_train_state, read_mean_std
from landiff_jax.tokenizer.original import tokenizer_train_config

# io.npz arrays that are inputs (the checkpoint's state, the features, the injected draw)
_INPUTS = {"features", "codebook_embed_before", "codebook_embed_avg_before", "codebook_cluster_size_before",
           "codebook_initted_before", "dead_code_sample_index", "randint_draw"}


def _tolerance(meta_tol: dict, name: str) -> Tolerance:
    if name.startswith("loss_"):
        group = "losses"
    elif name.startswith(("post_ema_", "codebook_", "dead_code_replaced_with")):
        group = "codebook_after"
    else:
        group = "activations"
    band = meta_tol.get(group, {})
    return tolerance_for(meta_tol, name, Tolerance(band.get("atol", 1e-4), band.get("rtol", 1e-4)))


def _step(cfg: TokenizerTrainConfig):
    """One jitted step: `losses.forward` (the body of `inner_loss`) and its gradient, with the trace."""

    def loss_fn(trainable, model_state, batch, draws):
        loss, metrics, new_state, trace = losses.forward(cfg, trainable, model_state, batch, draws)
        return loss, (metrics, new_state, trace)

    @jax.jit
    def step(trainable, model_state, batch, draws):
        (loss, (metrics, new_state, trace)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, model_state, batch, draws)
        return loss, metrics, new_state, grads, trace

    return step


def _expected_grads(case_dir: Path, meta: dict, cfg: TokenizerTrainConfig):
    """grads.npz (torch parameter names) → our trainable tree, through the converter's table."""
    with np.load(case_dir / meta["grads"]["file"]) as z:
        grads = {k: z[k] for k in z.files}
    m = cfg.model
    grads["quantizer._codebook.embed"] = np.zeros((1, m.codebook_size, m.codebook_dim), np.float32)  # no gradient
    tree, _ = convert_params(grads, m, theia=False, source=str(case_dir / meta["grads"]["file"]))
    return losses.split_params(tree)[0]


def run(case_dir: Path, meta: dict) -> list[Check]:
    case_dir = Path(case_dir)
    _, arrays = load_case(case_dir)
    cfg = tokenizer_train_config(meta["config"])
    state_dict = read_safetensors(case_dir / meta["checkpoint"]["file"])
    params, _ = convert_params(state_dict, cfg.model, source=str(case_dir))
    trainable, _ = losses.split_params(params)
    model_state, _ = convert_train_state(state_dict, cfg, source=str(case_dir))
    tol = meta.get("tolerance", {})
    checks: list[Check] = []

    def check(name: str, actual):
        checks.append(compare(name, actual, arrays[name], _tolerance(tol, name)))

    if not bool(model_state["codebook"]["initted"]):
        return [Check("kmeans_init", False, float("inf"), float("inf"),
                      "the case's codebook is not initted: its k-means draws are not recorded")]
    if cfg.normalize:  # the original reads mean_std_path first; the checkpoint's buffers then replace it
        mean, std = read_mean_std(case_dir / meta["config"]["mean_std_path"], cfg.model.image_channels)
        for name, value in (("mean", mean), ("std", std)):
            check(name, value)
            checks.append(compare(f"{name} (checkpoint)", model_state[name], arrays[name], Tolerance(0.0, 0.0)))

    features = channels_last(arrays["features"])
    b, t = features.shape[:2]
    n, k = losses.num_vectors(cfg, b, t), cfg.model.codebook_size
    draws = {"kmeans_rows": jnp.zeros((k,), jnp.int32),  # unused: the codebook is initted
             "dead_code_rows": codebook.rows_as_draws(arrays.get("dead_code_sample_index", np.zeros(0, int)), n, k)}
    loss, metrics, new_state, grads, trace = _step(cfg)(trainable, model_state, {"features": features}, draws)

    for name, metric in (("loss_total", "loss"), ("loss_rec", "rec_loss"), ("loss_commit", "commit_loss"),
                         ("loss_IFrame", "iframe_loss"), ("loss_PFrame", "pframe_loss")):
        check(name, np.reshape(metrics[metric], np.shape(arrays[name])))  # T = 1: the original's zeros(1)
    checks.append(compare("loss (returned)", loss, arrays["loss_total"], _tolerance(tol, "loss_total")))

    check("features_normalized", channels_first(trace["features_normalized"]))
    check("encoder_out", as_original_latent(trace["encoder_out"]))
    for name in ("vq_projected_in", "indices", "vq_codebook_quantize", "vq_rotated_quantize", "quantized",
                 "code_counts", "expired_mask"):
        check(name, trace[name])
    check("vq_distances", -np.asarray(trace["vq_distances"]))
    check("re_features", channels_first(trace["re_features"]))
    check("dead_code_samples", np.asarray(trace["vq_projected_in"]).reshape(n, -1))
    for part in ("cluster_size", "embed_avg", "embed"):
        check(f"post_ema_{part}", np.asarray(trace["post_ema"][part])[None])

    after = {key: np.asarray(v) for key, v in new_state["codebook"].items()}
    replaced = np.flatnonzero(np.asarray(trace["expired_mask"]))
    check("dead_code_replaced_codes", replaced)
    check("dead_code_replaced_with", after["embed"][replaced])
    for part in ("embed", "embed_avg", "cluster_size"):
        check(f"codebook_{part}_after", after[part][None])
    check("codebook_initted_after", after["initted"].astype(np.float32).reshape(1))

    expected = traverse_util.flatten_dict(_expected_grads(case_dir, meta, cfg), sep="/")
    ours = traverse_util.flatten_dict(jax.device_get(grads), sep="/")
    if set(ours) != set(expected):
        checks.append(Check("grads", False, float("inf"), float("inf"),
                            f"parameters differ: {sorted(set(ours) ^ set(expected))}"))
    for path in sorted(expected):
        if path in ours:
            checks.append(compare(f"grad {path}", ours[path], expected[path],
                                  tensor_max_tolerance(tol["grads"], expected[path])))

    unchecked = sorted(set(arrays) - _INPUTS - {c.name for c in checks})
    if unchecked:
        checks.append(Check("unchecked arrays", False, float("inf"), float("inf"), f"no check for {unchecked}"))
    return checks
