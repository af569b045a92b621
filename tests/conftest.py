"""Shared test fixtures.

`fixtures_dir` is ../shared/fixtures next to the checkout (or $LANDIFF_FIXTURES); `torch` is
torch, which only the `convert` extra installs (tests that read the released .pt files or
compare with torch code take it). On a user's machine without them, those tests skip with a
message; under CI (CI=true, where .ci/run installs both) their absence fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fixtures_root() -> Path:
    return Path(os.environ.get("LANDIFF_FIXTURES", REPO.parent / "shared" / "fixtures"))


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    root = _fixtures_root()
    if not root.is_dir():
        _skip_or_fail(f"parity fixtures not found at {root} (set LANDIFF_FIXTURES)")
    return root


@pytest.fixture(scope="session")
def torch():
    try:
        import torch
    except ImportError:
        _skip_or_fail("needs torch, which is not installed: pip install 'landiff-jax[convert]' "
                      "(its CPU build: see the README)")
    return torch


class Compilations:
    """XLA traces and compilations seen while counting (jax.monitoring's public events): a jitted
    function traces once per new cache entry, so `traces` counts cache misses, eager ops
    included; `traced` names the functions traced, in order (where jax names them)."""

    TRACE, COMPILE = "/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.compiles = 0
        self.traced: list[str | None] = []

    @property
    def traces(self) -> int:
        return len(self.traced)

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event == self.TRACE:
            self.traced.append(kwargs.get("fun_name"))
        self.compiles += event == self.COMPILE

    def __enter__(self) -> "Compilations":
        import jax

        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc) -> None:
        import jax

        jax.monitoring.unregister_event_duration_listener(self)


@pytest.fixture
def compilations():
    with Compilations() as counter:
        yield counter
