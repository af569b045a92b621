"""The harness: comparison of arrays against a case's tolerances, reading cases, and the loop
that runs every case below some directories through its runner (`landiff_jax.parity.RUNNERS`).

A case is a directory holding `meta.json` (its `component` names the runner) and `io.npz`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np


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
Runner = Callable[[Path, dict], "list[Check]"]  # (case_dir, meta) -> checks


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


def tensor_max_tolerance(spec, expected) -> Tolerance:
    """meta.json's gradient tolerance ("atol A + rtol R relative to each tensor's max |grad|", or
    {atol, rtol}) for one expected tensor: allowed error A + R·max|expected| everywhere."""
    if isinstance(spec, dict):
        atol, rtol = float(spec["atol"]), float(spec["rtol"])
    else:
        found = re.search(r"atol\s*([0-9.]+(?:e[-+]?\d+)?)\s*\+\s*rtol\s*([0-9.]+(?:e[-+]?\d+)?)", str(spec),
                          re.IGNORECASE)
        if not found:
            raise ValueError(f"meta.json tolerance.grads {spec!r}: expected 'atol X + rtol Y ...'")
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


def run_case(case_dir: Path, runners: Mapping[str, Runner]) -> tuple[str, list[Check]]:
    """One case through `runners[meta.json's component]`, float32 matmuls at full precision."""
    meta = json.loads((case_dir / "meta.json").read_text())
    component = meta.get("component", case_dir.parent.name)
    label = f"{component}/{meta.get('case', case_dir.name)}"
    runner = runners.get(component)
    if runner is None:
        return label, [Check("component", False, float("inf"), float("inf"), f"unknown component '{component}'")]
    import jax

    with jax.default_matmul_precision("highest"):
        return label, runner(case_dir, meta)


def format_result(label: str, checks: list[Check], seconds: float) -> str:
    failed = [c for c in checks if not c.passed]
    status = "PASS" if checks and not failed else "FAIL"
    pool = failed or checks
    worst = max(pool, key=lambda c: c.ratio) if pool else Check("-", False, float("nan"), float("nan"), "no checks")
    detail = f" {worst.detail}" if worst.detail else ""
    extra = f" [{len(failed)}/{len(checks)} arrays fail]" if failed else ""
    return f"{label} {status} {worst.max_abs_err:.3g} ({worst.name}){detail}{extra} {seconds:.1f}s"


def run_all(roots: Iterable[str | Path], runners: Mapping[str, Runner]) -> int:
    """Every case below `roots`: one line per case, then a summary; 0 when all passed."""
    cases = find_cases(roots)
    passed = failed = 0
    for case in cases:
        start = time.perf_counter()
        try:
            label, checks = run_case(case, runners)
        except Exception as e:  # a crash is a failure of that case, not of the run
            label = f"{case.parent.name}/{case.name}"
            traceback.print_exc()
            checks = [Check("run", False, float("inf"), float("inf"), f"{type(e).__name__}: {e}".splitlines()[0])]
        ok = bool(checks) and all(c.passed for c in checks)
        passed, failed = passed + ok, failed + (not ok)
        print(format_result(label, checks, time.perf_counter() - start), flush=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and cases else 1
