"""Check the project against the original's fixture cases.

usage: python tools/parity.py ../shared/fixtures/t5 [more dirs...]
Prints `component/case PASS|FAIL worst-error (array)` per case, then `N passed, M failed`.
A missing directory, one without cases, or a case whose meta.json is not a JSON object or whose
io.npz is missing or unreadable is a one-line error before any case runs.
"""

import json
import zipfile
from pathlib import Path

from landiff_jax import cli


def check_roots(roots: list[str]) -> None:
    for root in map(Path, roots):
        if not root.is_dir():
            raise cli.UsageError(f"no such directory: {root}")
        metas = sorted(root.rglob("meta.json"))
        if not metas:
            raise cli.UsageError(f"no fixture cases (meta.json) below {root}")
        for meta in metas:
            check_case(meta)


def check_case(meta: Path) -> None:
    """A case's meta.json is a JSON object and its io.npz an archive numpy reads (its index only)."""
    import numpy as np

    try:
        if not isinstance(json.loads(meta.read_text()), dict):
            raise cli.UsageError(f"{meta} is not a JSON object")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise cli.UsageError(f"{meta} is not valid JSON ({e})")
    arrays = meta.with_name("io.npz")
    if not arrays.is_file():
        raise cli.UsageError(f"{arrays} not found (every case holds its inputs and expected outputs there)")
    if not zipfile.is_zipfile(arrays):
        raise cli.UsageError(f"{arrays} is not an .npz archive (not a zip file)")
    try:
        with np.load(arrays, allow_pickle=False) as npz:
            npz.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise cli.UsageError(f"{arrays} is not a readable .npz archive ({str(e).splitlines()[0]})")


def main(argv):
    if len(argv) < 2:
        raise cli.UsageError("give one or more fixture directories")
    check_roots(argv[1:])
    from landiff_jax.parity import main as run_parity

    return run_parity(argv[1:])


if __name__ == "__main__":
    cli.run(main)
