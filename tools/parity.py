"""Check the project against the original's fixture cases.

usage: python tools/parity.py ../shared/fixtures/t5 [more dirs...]
Prints `component/case PASS|FAIL worst-error (array)` per case, then `N passed, M failed`.
"""

import sys

from landiff_jax.parity import main

if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: parity.py DIR [DIR ...]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
