"""Every public VAE fixture case through the project's converter and code paths."""

from __future__ import annotations

import json

import jax
import pytest

from landiff_jax.parity import RUNNERS

CASES = ["enc_dec_9f_32x48", "enc_dec_17f_16x24", "dec_random_latent_7t_4x6"]


@pytest.mark.parametrize("case", CASES)
def test_parity(fixtures_dir, case):
    case_dir = fixtures_dir / "vae" / case
    meta = json.loads((case_dir / "meta.json").read_text())
    with jax.default_matmul_precision("highest"):
        checks = RUNNERS["vae"](case_dir, meta)
    failed = [c for c in checks if not c.passed]
    assert checks and not failed, "\n".join(f"{c.name}: {c.max_abs_err:.3g} {c.detail}" for c in failed)
