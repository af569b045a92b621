"""Shared test fixtures.

`fixtures_dir` is ../shared/fixtures next to the checkout (or $LANDIFF_FIXTURES). On a user's
machine without it, parity tests skip with a message; under CI (CI=true) its absence fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fixtures_root() -> Path:
    return Path(os.environ.get("LANDIFF_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    root = _fixtures_root()
    if not root.is_dir():
        message = f"parity fixtures not found at {root} (set LANDIFF_FIXTURES)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return root
