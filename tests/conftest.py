"""Shared test fixtures.

`fixtures_dir` is ../shared/fixtures next to the checkout (or $LANDIFF_FIXTURES); `torch` is
torch, which only the `convert` extra installs (tests that read the released .pt files or
compare with torch code take it). On a user's machine without them, those tests skip with a
message; under CI (CI=true, where .ci/run installs both) their absence fails.

The tools' compilation cache goes to a temporary directory of the session (not ~/.cache),
unless $LANDIFF_JAX_COMPILATION_CACHE is set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE_ENV = "LANDIFF_JAX_COMPILATION_CACHE"  # runtime.CACHE_ENV (not imported: jax loads later)
_session_cache: str | None = None


def pytest_configure(config):
    global _session_cache
    if not os.environ.get(CACHE_ENV):  # before collection: modules copy os.environ for their tools
        _session_cache = tempfile.mkdtemp(prefix="landiff_jax_xla_")
        os.environ[CACHE_ENV] = _session_cache


def pytest_unconfigure(config):
    if _session_cache is not None:
        shutil.rmtree(_session_cache, ignore_errors=True)


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
