"""Check the project against the original's fixture cases.

usage: python tools/parity.py ../shared/fixtures/t5 [more dirs...]
Prints `component/case PASS|FAIL worst-error (array)` per case, then `N passed, M failed`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from landiff_jax.parity import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
