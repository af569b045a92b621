"""How every tool in tools/ starts and ends: absl flags, SIGTERM unwinding like Ctrl-C (so that
temporary files are removed), and user errors as one line plus the hint `--help` with a non-zero
exit; an unexpected internal error keeps its traceback.

    if __name__ == "__main__":
        cli.run(main)                  # cli.run(main, compiles=True) for a tool that compiles

User errors: `app.UsageError` and `UsageError` (exit 2); a bad checkpoint, config file, dataset,
video write, files that do not fit the config, an output another process is writing
(`CheckpointError`, `ConfigError`, `RecordError`, `VideoWriteError`, `ConversionError`,
`FileExistsError`) and a full disk or a permission refused (exit 1). Ctrl-C / SIGTERM: one line, exit 130 / 143.

A tool that compiles (`compiles=True`) keeps its compiled code across runs in jax's persistent
compilation cache (`runtime.use_compilation_cache`), on by default: --compilation_cache_dir
(default $LANDIFF_JAX_COMPILATION_CACHE, else ~/.cache/landiff_jax/xla), --nocompilation_cache
turns it off.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Callable

from absl import app, flags, logging

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


def define_compilation_cache_flags() -> None:
    flags.DEFINE_bool("compilation_cache", True, "keep compiled code across runs (jax's persistent compilation "
                      "cache) in --compilation_cache_dir")
    flags.DEFINE_string("compilation_cache_dir", None, "the compilation cache's directory (default: "
                        "$LANDIFF_JAX_COMPILATION_CACHE, else ~/.cache/landiff_jax/xla)")


def start_compilation_cache() -> None:
    """The cache the flags ask for; an unusable default directory only warns (no cache)."""
    from landiff_jax import runtime

    given = flags.FLAGS.compilation_cache_dir
    if not flags.FLAGS.compilation_cache:
        runtime.use_compilation_cache(None)
        return
    try:
        runtime.use_compilation_cache(given or runtime.default_cache_dir())
    except OSError as e:
        if given:
            raise UsageError(f"--compilation_cache_dir {given}: {describe_os_error(e)}") from None
        print(f"warning: no compilation cache ({describe_os_error(e)})", file=sys.stderr)


def run(main: Callable[[list[str]], int | None], *, compiles: bool = False) -> None:
    """compiles: the tool compiles (the compilation cache's flags; module docstring)."""
    tool = os.path.basename(sys.argv[0])
    if compiles:
        define_compilation_cache_flags()

    def guarded(argv):
        exit_on_sigterm()
        try:
            if compiles:
                start_compilation_cache()
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
