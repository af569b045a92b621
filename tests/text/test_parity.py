"""Fixture parity: both public t5 cases through the real runner, and the T5 arrays of the
end-to-end case (its T5 v1.1 directory is sharded)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from landiff_jax.parity import RUNNERS, compare, load_case, tolerance_for
from landiff_jax.text.convert import load_t5
from landiff_jax.text.encoders import encode_for_diffusion, encode_for_lm
from landiff_jax.text.tokenizer import T5TextTokenizer, TruncationWarning


def _cases(root, component):
    return sorted(p.parent for p in root.glob(f"{component}/*/meta.json"))


def test_t5_cases_pass(fixtures_dir):
    cases = _cases(fixtures_dir, "t5")
    assert len(cases) >= 2, f"expected the public t5 cases under {fixtures_dir / 't5'}"
    for case in cases:
        checks = RUNNERS["t5"](case, json.loads((case / "meta.json").read_text()))
        failed = [c for c in checks if not c.passed]
        assert checks and not failed, f"{case.name}: {failed}"
        names = {c.name for c in checks}
        assert {"input_ids", "last_hidden_state"} <= names


def test_e2e_t5_arrays(fixtures_dir):
    cases = _cases(fixtures_dir, "e2e")
    if not cases:
        pytest.skip(f"no e2e case under {fixtures_dir}")
    for case in cases:
        meta, arrays = load_case(case)
        tol = meta["tolerance"]
        prompt = [meta["prompt"]]
        flan, v11 = meta["config"]["flan_t5"], meta["config"]["t5_v1_1_xxl"]

        cfg, params = load_t5(case / flan["dir"])
        tok = T5TextTokenizer(case / flan["dir"])
        ids, _ = tok.encode_lm(prompt)
        hidden, mask = encode_for_lm(tok, params, cfg, prompt)
        got = {"lm_t5_input_ids": ids, "lm_t5_attention_mask": mask.astype(np.int64), "lm_t5_last_hidden_state": hidden}

        cfg, params = load_t5(case / v11["dir"])  # sharded safetensors + index
        tok = T5TextTokenizer(case / v11["dir"])
        length = v11["tokenizer"]["max_length"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)
            got["dit_t5_input_ids"] = tok.encode_diffusion(prompt, length)
        got["dit_t5_negative_input_ids"] = tok.encode_diffusion([""], length)
        got["dit_t5_negative_last_hidden_state"] = encode_for_diffusion(tok, params, cfg, [""], length)

        for name, value in got.items():
            check = compare(name, value, arrays[name], tolerance_for(tol, name))
            assert check.passed, f"{case.name}: {check}"
