"""Parity against the original: run fixture cases through the project's own converters and
code paths and compare every expected array.

A case is a directory holding `meta.json` (its `component` names the model) and `io.npz`.
Each model package provides `<package>/parity.py` with `run(case_dir, meta) -> list[Check]`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Iterable

import numpy as np

# meta.json 'component' -> module that runs such cases
RUNNERS = {
    "t5": "landiff_jax.text.parity",
    "theia": "landiff_jax.tokenizer.parity",
    "tokenizer": "landiff_jax.tokenizer.parity",
    "tokenizer_train": "landiff_jax.tokenizer.train_parity",
    "lm": "landiff_jax.lm.parity",
    "lm_train": "landiff_jax.lm.train_parity",
    "dit": "landiff_jax.diffusion.parity",
    "sampler": "landiff_jax.diffusion.parity",
    "diffusion_train": "landiff_jax.diffusion.train_parity",
    "vae": "landiff_jax.vae.parity",
    "e2e": "landiff_jax.pipeline_parity",
}


@dataclasses.dataclass
class Check:
    name: str
    passed: bool
    max_abs_err: float
    # error relative to the allowed band (max |a-e| / (atol + rtol|e|)); > 1 fails
    ratio: float
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-4
    exact: bool = False


EXACT = Tolerance(exact=True)


def tolerance_for(meta_tolerance: dict, name: str, default: Tolerance | None = None) -> Tolerance:
    """Resolve a case's tolerance for one array from the forms meta.json uses:
    top-level atol/rtol, `name: "exact"`, `exact: [names]`, `name: {atol, rtol}`,
    `per_array: {name: {atol, rtol}}`."""
    tol = meta_tolerance or {}
    if tol.get(name) == "exact" or name in tol.get("exact", []):
        return EXACT
    per = tol[name] if isinstance(tol.get(name), dict) else tol.get("per_array", {}).get(name)
    if per:
        return Tolerance(per.get("atol", 1e-4), per.get("rtol", 1e-4))
    if default is not None:
        return default
    return Tolerance(tol.get("atol", 1e-4), tol.get("rtol", 1e-4))


def tensor_max_tolerance(spec: str, expected) -> Tolerance:
    """meta.json's gradient form "atol A + rtol R relative to each tensor's max |grad|" for one
    expected tensor: allowed error A + R·max|expected| everywhere."""
    found = re.fullmatch(r"\s*atol\s+(\S+)\s*\+\s*rtol\s+(\S+)\s+relative to each tensor's max \|grad\|.*", spec)
    if not found:
        raise ValueError(f"unrecognised gradient tolerance {spec!r}")
    atol, rtol = float(found.group(1)), float(found.group(2))
    return Tolerance(atol + rtol * float(np.max(np.abs(expected), initial=0.0)), 0.0)


def compare(name: str, actual, expected, tol: Tolerance) -> Check:
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return Check(name, False, float("inf"), float("inf"), f"shape {actual.shape} != expected {expected.shape}")
    if tol.exact or expected.dtype.kind in "biuU":
        mismatches = int(np.sum(actual != expected))
        return Check(name, mismatches == 0, float(mismatches), float(mismatches),
                     f"{mismatches} of {expected.size} differ" if mismatches else "")
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    if not np.all(np.isfinite(a)):
        return Check(name, False, float("inf"), float("inf"), "non-finite values")
    err = np.abs(a - e)
    band = tol.atol + tol.rtol * np.abs(e)  # zero band (atol = rtol = 0): exact equality
    over = np.divide(err, band, out=np.where(err > 0, np.inf, 0.0), where=band > 0)
    ratio = float(over.max()) if err.size else 0.0
    return Check(name, ratio <= 1.0, float(err.max()) if err.size else 0.0, ratio)


# The original keeps channels before the spatial axes; we keep them last.
def channels_last(a) -> np.ndarray:
    """[..., c, h, w] (torch frames) -> [..., h, w, c]."""
    return np.moveaxis(np.asarray(a), -3, -1)


def channels_first(a) -> np.ndarray:
    """[..., h, w, c] -> [..., c, h, w]."""
    return np.moveaxis(np.asarray(a), -1, -3)


def from_ncthw(a) -> np.ndarray:
    """[b c t h w] (torch video/latent) -> [b t h w c]."""
    return np.moveaxis(np.asarray(a), 1, -1)


def to_ncthw(a) -> np.ndarray:
    """[b t h w c] -> [b c t h w]."""
    return np.moveaxis(np.asarray(a), -1, 1)


def load_case(case_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((case_dir / "meta.json").read_text())
    with np.load(case_dir / "io.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def find_cases(roots: Iterable[str | Path]) -> list[Path]:
    cases = []
    for root in map(Path, roots):
        if not root.exists():
            raise FileNotFoundError(f"no such directory: {root}")
        cases += sorted(p.parent for p in root.rglob("meta.json"))
    return cases


def run_case(case_dir: Path) -> tuple[str, list[Check]]:
    meta = json.loads((case_dir / "meta.json").read_text())
    component = meta.get("component", case_dir.parent.name)
    label = f"{component}/{meta.get('case', case_dir.name)}"
    module_name = RUNNERS.get(component)
    if module_name is None:
        return label, [Check("component", False, float("inf"), float("inf"), f"unknown component '{component}'")]
    try:
        runner = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            return label, [Check("component", False, float("inf"), float("inf"), f"not implemented ({module_name})")]
        raise
    return label, runner.run(case_dir, meta)


def format_result(label: str, checks: list[Check], seconds: float) -> str:
    failed = [c for c in checks if not c.passed]
    status = "PASS" if checks and not failed else "FAIL"
    pool = failed or checks
    worst = max(pool, key=lambda c: c.ratio) if pool else Check("-", False, float("nan"), float("nan"), "no checks")
    detail = f" {worst.detail}" if worst.detail else ""
    extra = f" [{len(failed)}/{len(checks)} arrays fail]" if failed else ""
    return f"{label} {status} {worst.max_abs_err:.3g} ({worst.name}){detail}{extra} {seconds:.1f}s"


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: parity.py DIR [DIR ...]", file=sys.stderr)
        return 2
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    cases = find_cases(argv)
    passed = failed = 0
    for case in cases:
        start = time.perf_counter()
        try:
            label, checks = run_case(case)
        except Exception as e:  # a crash is a failure of that case, not of the run
            label = f"{case.parent.name}/{case.name}"
            traceback.print_exc()
            checks = [Check("run", False, float("inf"), float("inf"), f"{type(e).__name__}: {e}".splitlines()[0])]
        ok = bool(checks) and all(c.passed for c in checks)
        passed, failed = passed + ok, failed + (not ok)
        print(format_result(label, checks, time.perf_counter() - start), flush=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and cases else 1
