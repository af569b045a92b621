"""How every tool in tools/ starts and ends: absl flags, SIGTERM unwinding like Ctrl-C (so that
temporary files are removed), and user errors as one line plus the hint `--help` with a non-zero
exit; an unexpected internal error keeps its traceback.

    if __name__ == "__main__":
        cli.run(main)                  # cli.run(main, compiles=True) for a tool that compiles

User errors: a flag absl cannot parse, `app.UsageError` and `UsageError` (exit 2); a bad checkpoint,
config file, dataset, video write or read, files that do not fit the config, an output another process is
writing (`CheckpointError`, `ConfigError`, `RecordError`, `VideoWriteError`, `VideoReadError`, `ConversionError`,
`FileExistsError`) and a full disk, a file-size limit or a permission refused (exit 1).
Ctrl-C / SIGTERM: one line, exit 130 / 143. A closed stdout (`tool --help | head -3`): quiet, exit 141
(128 + SIGPIPE, what the shell shows for a program that a closed pipe ended; `closed_stdout`).
An output directory a tool will make: `check_output_dir` before any work.

The model a tool serves (tools/generate.py, tools/demo.py): `choose_model` from the flags
--checkpoint / --config / --preset / --random_weights, then `load_model`.

A tool that compiles (`compiles=True`) keeps its compiled code across runs in jax's persistent
compilation cache (`runtime.use_compilation_cache`), on by default: --compilation_cache_dir
(default $LANDIFF_JAX_COMPILATION_CACHE, else $JAX_COMPILATION_CACHE_DIR, else
~/.cache/landiff_jax/xla; `runtime.default_cache_dir`), --nocompilation_cache turns it off.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import select
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from absl import app, flags, logging

from landiff_jax.files import describe_os_error, exit_on_sigterm, nearest_existing

ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS)
# the trained tiny system shipped in the repository: the tools' model when no flag names one
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny"


class UsageError(app.UsageError):
    """A bad command line: one line and the hint `--help` (exit 2)."""


def user_errors() -> tuple[type[BaseException], ...]:
    from landiff_jax.config_file import ConfigError
    from landiff_jax.convert.io import CheckpointError
    from landiff_jax.convert.table import ConversionError
    from landiff_jax.data.records import RecordError
    from landiff_jax.video_io import VideoReadError, VideoWriteError

    return (CheckpointError, ConversionError, ConfigError, RecordError, VideoWriteError, VideoReadError,
            FileExistsError)


def quiet_libraries(verbose: bool) -> None:
    """The storage libraries' (orbax, tensorstore, grain) INFO lines only with --verbose."""
    if not verbose:
        logging.set_verbosity(logging.WARNING)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def define_compilation_cache_flags() -> None:
    flags.DEFINE_bool("compilation_cache", True, "keep compiled code across runs (jax's persistent compilation "
                      "cache) in --compilation_cache_dir")
    flags.DEFINE_string("compilation_cache_dir", None, "the compilation cache's directory (default: "
                        "$LANDIFF_JAX_COMPILATION_CACHE, else $JAX_COMPILATION_CACHE_DIR, else "
                        "~/.cache/landiff_jax/xla)")


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

    try:
        try:
            app.run(guarded, flags_parser=lambda argv: parse_flags(tool, argv))
        except SystemExit:  # how app.run (and --help) ends: what stdout still buffers goes now, not at shutdown
            sys.stdout.flush()
            raise
    except BrokenPipeError:
        if not closed_stdout():
            raise  # another pipe (a subprocess's): an internal error
        sys.exit(128 + signal.SIGPIPE)


def closed_stdout() -> bool:
    """Whether stdout is a pipe whose reader has gone (`| head`); if so, stdout is pointed at
    /dev/null so that nothing more (the interpreter's last flush) fails on it."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)  # a pipe without a reader: POLLERR
        closed = any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no fileno (replaced stdout), no poll on this platform
        return False
    if closed:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return closed


def check_output_dir(flag: str, directory: Path, subdirectory: str | None = None) -> None:
    """`directory` (and `directory/subdirectory`, where the tool writes too) is, or can be made, a
    writable directory: a UsageError naming `flag` otherwise (a file on the way, no permission).
    Nothing is created."""
    directory = Path(directory)
    for path in (directory,) if subdirectory is None else (directory, directory / subdirectory):
        existing = nearest_existing(path)
        if not existing.is_dir():
            what = "a file, not a directory" if existing.is_file() else "not a directory"
            raise UsageError(f"{flag} {directory}: {existing} is {what}")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {directory}: {existing} is not writable")


def parse_flags(tool: str, argv: list[str]) -> list[str]:
    """absl's parsing of argv, with a flag it cannot parse (`--steps ten`, an unknown flag or enum
    value, a missing required flag) as one line and the hint --help, exit 2; absl's own parser
    prints two lines and exits 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = " ".join(str(e).split())
        print(f"{tool}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


SHIPPED_CHECKPOINT_HELP = "converted checkpoint directory (tools/convert.py; default: the shipped checkpoints/tiny)"


def define_model_flags(checkpoint_help: str = SHIPPED_CHECKPOINT_HELP) -> None:
    """The flags a tool's model is chosen by (`choose_model`): --checkpoint, --config, --preset,
    --random_weights."""
    flags.DEFINE_string("checkpoint", None, checkpoint_help)
    flags.DEFINE_string("config", None, "with --random_weights: the system config file (configs/*.py)")
    flags.DEFINE_enum("preset", None, ["full", "tiny"], "with --random_weights: shorthand for --config "
                      "configs/<preset>.py (default: tiny)")
    flags.DEFINE_bool("random_weights", False, "use RANDOM weights of --config (shows the code path; output is noise)")


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """The system a tool serves: a converted checkpoint, or RANDOM weights of a config."""

    cfg: Any  # LanDiffConfig
    source: str  # how the tool names it: the checkpoint directory, or the config file / preset
    checkpoint: Path | None = None  # None: random weights
    warning: str | None = None  # a line the tool prints before generating (random weights)


def choose_model(checkpoint: str | None = None, config: str | None = None, preset: str | None = None,
                 random_weights: bool = False) -> ModelChoice:
    """--checkpoint DIR, or --random_weights with --config/--preset (default: tiny); with neither
    the shipped tiny checkpoint (DEFAULT_CHECKPOINT), or RANDOM tiny weights in a checkout without
    it. Reads the config only; a bad choice is a UsageError (one line)."""
    from landiff_jax.checkpoint import load_config
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.config_file import ConfigError
    from landiff_jax.convert.io import CheckpointError

    if random_weights and checkpoint:
        raise UsageError("--random_weights and --checkpoint exclude each other")
    if not (random_weights or checkpoint) and (config or preset):
        raise UsageError("a converted checkpoint carries its config; --config/--preset go with --random_weights")
    fallback = not (random_weights or checkpoint or DEFAULT_CHECKPOINT.is_dir())
    if random_weights or fallback:
        try:
            cfg = LanDiffConfig.select(config, preset, default="tiny")
        except ConfigError as e:
            raise UsageError(str(e))
        source = config or preset or "tiny"
        why = " (this checkout has no shipped checkpoints/tiny)" if fallback else ""
        return ModelChoice(cfg, source, warning=f"RANDOM weights ({source}){why}: the video is noise, "
                                                "not a generation.")
    directory = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if not directory.is_dir():
        raise UsageError(f"checkpoint directory not found: {directory}")
    try:
        cfg = load_config(directory)
    except CheckpointError as e:
        raise UsageError(str(e))
    return ModelChoice(cfg, str(directory), directory)


def compute_dtype(dtype: str | None = None) -> str:
    """`dtype`, else bfloat16 on a GPU and float32 elsewhere."""
    import jax

    return dtype or ("bfloat16" if jax.default_backend() == "gpu" else "float32")


def load_model(choice: ModelChoice, dtype: str, *, seed: int = 0, dit_attention: str | None = None,
               verify: str = "cheap", compile_for=None):
    """The pipeline of `choice` in `dtype`: random weights drawn from `seed`, or the checkpoint
    loaded after checking its checksums (`verify`: none, cheap or full; see tools/generate.py),
    with `compile_for` (a `pipeline.CompileFor`) compiling meanwhile."""
    from landiff_jax import checkpoint
    from landiff_jax.pipeline import LanDiff

    try:  # a ValueError: too little device memory for the weights (checked before building/loading)
        if choice.checkpoint is None:
            return LanDiff.random(choice.cfg.with_dtype(dtype), seed=seed, dit_attention=dit_attention)
        if verify == "full":
            print(f"verifying every checksum of {choice.checkpoint}", flush=True)
        # before compiling starts: a damaged file is found in a second, not after minutes of compiling beside it
        checkpoint.verify(choice.checkpoint, verify)
        print(f"loading {choice.checkpoint}" + (" (and compiling meanwhile)" if compile_for else ""), flush=True)
        return LanDiff.from_checkpoint(choice.checkpoint, dtype=dtype, dit_attention=dit_attention, verify="none",
                                       compile_for=compile_for)
    except ValueError as e:
        raise UsageError(str(e))
