"""Check the project against the original's fixture cases.

usage: python tools/parity.py ../shared/fixtures/t5 [more dirs...]
Prints `component/case PASS|FAIL worst-error (array)` per case, then `N passed, M failed`.
A missing directory, one without cases or a case whose meta.json is not JSON is a one-line error.
"""

import json
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
            try:
                json.loads(meta.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise cli.UsageError(f"{meta} is not valid JSON ({e})")


def main(argv):
    if len(argv) < 2:
        raise cli.UsageError("give one or more fixture directories")
    check_roots(argv[1:])
    from landiff_jax.parity import main as run_parity

    return run_parity(argv[1:])


if __name__ == "__main__":
    cli.run(main)
