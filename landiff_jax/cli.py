"""How every tool in tools/ starts and ends: absl flags, SIGTERM unwinding like Ctrl-C (so that
temporary files are removed), and user errors as one line plus the hint `--help` with a non-zero
exit; an unexpected internal error keeps its traceback.

    if __name__ == "__main__":
        cli.run(main)

User errors: `app.UsageError` and `UsageError` (exit 2); a bad checkpoint, config file, dataset,
video write, files that do not fit the config, an output another process is writing
(`CheckpointError`, `ConfigError`, `RecordError`, `VideoWriteError`, `ConversionError`,
`FileExistsError`) and a full disk or a permission refused (exit 1). Ctrl-C / SIGTERM: one line, exit 130 / 143.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Callable

from absl import app, logging

from landiff_jax.files import describe_os_error, exit_on_sigterm

ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


class UsageError(app.UsageError):
    """A bad command line: one line and the hint `--help` (exit 2)."""


def user_errors() -> tuple[type[BaseException], ...]:
    from landiff_jax.config_file import ConfigError
    from landiff_jax.convert.io import CheckpointError
    from landiff_jax.convert.table import ConversionError
    from landiff_jax.data.records import RecordError
    from landiff_jax.video_io import VideoWriteError

    return CheckpointError, ConversionError, ConfigError, RecordError, VideoWriteError, FileExistsError


def quiet_libraries(verbose: bool) -> None:
    """The storage libraries' (orbax, tensorstore, grain) INFO lines only with --verbose."""
    if not verbose:
        logging.set_verbosity(logging.WARNING)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def run(main: Callable[[list[str]], int | None]) -> None:
    tool = os.path.basename(sys.argv[0])

    def guarded(argv):
        exit_on_sigterm()
        try:
            return main(argv)
        except app.UsageError as e:
            print(f"{tool}: error: {e} (see --help)", file=sys.stderr)
            return 2
        except user_errors() as e:
            print(f"{tool}: error: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            if e.errno not in ENVIRONMENT_ERRNOS:
                raise
            print(f"{tool}: error: {describe_os_error(e)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{tool}: interrupted", file=sys.stderr)
            return 130

    app.run(guarded)
