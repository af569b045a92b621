"""Check the project against the original's fixture cases.

usage: python tools/parity.py ../shared/fixtures/t5 [more dirs...]
Prints `component/case PASS|FAIL worst-error (array)` per case, then `N passed, M failed`.
"""

from absl import app


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("give one or more fixture directories")
    from landiff_jax.parity import main as run_parity

    return run_parity(argv[1:])


if __name__ == "__main__":
    app.run(main)
