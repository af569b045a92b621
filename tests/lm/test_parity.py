"""Every public lm fixture case passes through the real code path (T5, converter, jitted sampler)."""

from __future__ import annotations

import json

import jax
import pytest

from landiff_jax.parity import RUNNERS

CASES = ["one_group_cfg6p5", "two_groups_cfg4"]


@pytest.mark.parametrize("case", CASES)
def test_lm_parity(fixtures_dir, case):
    case_dir = fixtures_dir / "lm" / case
    with jax.default_matmul_precision("highest"):
        checks = RUNNERS["lm"](case_dir, json.loads((case_dir / "meta.json").read_text()))
    failed = [c for c in checks if not c.passed]
    assert checks and not failed, failed
    assert {"step_logits_guided", "sampled_codes", "step_argmax", "position_tokens"} <= {c.name for c in checks}
