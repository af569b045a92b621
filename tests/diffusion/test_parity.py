"""Every public `dit` and `sampler` fixture case passes through the diffusion parity runner."""

from __future__ import annotations

import json

import pytest

from landiff_jax.parity import RUNNERS

CASES = ["dit/public_a", "dit/public_b", "sampler/public_a", "sampler/public_b"]


@pytest.mark.parametrize("case", CASES)
def test_parity(fixtures_dir, case):
    case_dir = fixtures_dir / case
    meta = json.loads((case_dir / "meta.json").read_text())
    checks = RUNNERS[meta["component"]](case_dir, meta)
    failed = [f"{c.name}: err {c.max_abs_err:.3g} ratio {c.ratio:.3g} {c.detail}" for c in checks if not c.passed]
    assert checks and not failed, failed
