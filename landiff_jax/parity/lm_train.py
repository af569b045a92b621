"""Parity runner for component `lm_train`: the original's packed training forward (d047daf
`Semantic1DLM.forward_packing`) against `lm_loss` with the case's injected drop decisions.

The checkpoint goes through the real converter and the config through `lm.original.lm_config`.
Our rows are left-padded per sample; the runner maps them to the fixture's packed order (the
samples' rows without their pads, concatenated, minus the very last position) and converts
grads.npz to our parameter tree with the converter's own table.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from landiff_jax.convert import convert
from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.convert import lm_rules, load_lm
from landiff_jax.lm.losses import Drops, lm_loss
from landiff_jax.lm.model import abstract_params
from landiff_jax.lm.original import lm_config
from landiff_jax.parity.harness import Check, compare, load_case, tensor_max_tolerance, tolerance_for


def packed(rows, pads) -> np.ndarray:
    """[b W ...] left-padded rows -> [S−1 ...]: each row from its pad on, concatenated, minus the last."""
    rows = np.asarray(rows)
    return np.concatenate([rows[i, p:] for i, p in enumerate(np.asarray(pads))])[:-1]


def _drops(cfg: LMConfig, io: dict) -> Drops:
    def keep(name, prob):
        if prob == 0:
            return None
        if name not in io:
            raise ValueError(f"io.npz lacks '{name}' although the config's drop probability is {prob}")
        return io[name].astype(bool)

    return Drops(keep("text_keep", cfg.text_drop_prob), keep("frames_keep", cfg.frames_drop_prob),
                 keep("motion_score_keep", cfg.motion_score_drop_prob))


def run(case_dir: Path, meta: dict) -> list[Check]:
    _, io = load_case(case_dir)
    cfg = lm_config(meta["config"], text_dim=io["t5_last_hidden_state"].shape[-1])
    params = load_lm(case_dir / meta["checkpoint"]["file"], cfg)
    batch = {"text_embedding": io["t5_last_hidden_state"], "text_mask": io["t5_attention_mask"].astype(bool),
             "codes": io["codes"], "frames": io["frames"], "motion_score": io["motion_score"]}
    loss_and_grad = jax.jit(jax.value_and_grad(functools.partial(lm_loss, cfg=cfg), has_aux=True))
    (loss, aux), grads = loss_and_grad(params, batch=batch, drops=_drops(cfg, io))

    pads = np.asarray(aux["pads"])
    targets = packed(aux["targets"], pads).astype(np.int64)
    # a sample's last row (its EOS) predicts, in the pack, the next sample's BOS (never a loss target)
    ends = np.cumsum(np.asarray(aux["logits"]).shape[1] - pads)[:-1] - 1
    targets[ends] = L.Vocab(cfg.codebook_size)[L.BOS]
    actual = {"loss": loss, "logits": packed(aux["logits"], pads), "token_losses": packed(aux["token_losses"], pads),
              "loss_mask": packed(aux["loss_mask"], pads), "targets": targets}
    tolerance = meta.get("tolerance", {})
    per_position = tolerance_for(tolerance, "token_losses", default=tolerance_for(tolerance, "loss"))
    checks = [compare(name, actual[name], io[name], per_position if name == "token_losses" else
                      tolerance_for(tolerance, name)) for name in actual]

    with np.load(case_dir / meta["grads"]["file"]) as z:
        torch_grads = {k: z[k] for k in z.files}
    expected, _ = convert(lm_rules(cfg), torch_grads, abstract_params(cfg), source=str(case_dir / "grads.npz"))
    ours = traverse_util.flatten_dict(jax.device_get(grads), sep="/")
    for name, want in traverse_util.flatten_dict(expected, sep="/").items():
        band = tensor_max_tolerance(tolerance.get("grads", "atol 1e-5 + rtol 1e-4"), want)
        checks.append(compare(f"grad {name}", ours[name], want, band))
    return checks
