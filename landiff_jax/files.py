"""Writing files so that nothing is lost: a hidden temporary sibling, checked, fsynced, then
renamed over the final name (and the directory fsynced); SIGTERM unwinds like an exception so
that every `finally` removes its temporaries; a lock file per output; stale temporaries of
killed runs are found by their prefix.

Temporary names: `.<final name>.tmp-<pid>-<random>[<suffix>]` beside the final path, so that a
later run can find (and remove) what a SIGKILL left behind, and tell a live writer's from a dead one's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

TMP_MARK = ".tmp-"
STARTED = time.time()  # (about) when this process started: temporaries older than it are not its own
TEMP_NAME = re.compile(rf"\.(?P<final>.+){re.escape(TMP_MARK)}(?:(?P<pid>\d+)-)?[a-z0-9_]+")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest ('md5', 'sha256', ...) of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def temp_sibling(path: Path, directory: bool = False) -> Path:
    """A new hidden temporary file (or directory) next to `path`, same suffix."""
    prefix, suffix = f".{path.name}{TMP_MARK}{os.getpid()}-", "" if directory else path.suffix
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def stale_temporaries(path: Path) -> list[Path]:
    """Temporaries of `path` left by a killed run (files or directories)."""
    return sorted(path.parent.glob(f".{path.name}{TMP_MARK}*")) if path.parent.is_dir() else []


def remove_stale_temporaries(directory: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Remove the temporary files (`temp_sibling` names) of final names ending in one of
    `suffixes` that a killed run left in `directory`: older than this process, and whose writer
    (the pid in the name) is gone. Nothing else is touched. → the removed paths."""
    removed = []
    for path in sorted(directory.glob(f".*{TMP_MARK}*")) if directory.is_dir() else []:
        match = TEMP_NAME.fullmatch(path.name.removesuffix(path.suffix))
        if (match is None or not path.is_file() or path.suffix not in suffixes
                or not match["final"].endswith(path.suffix) or path.stat().st_mtime >= STARTED
                or (match["pid"] is not None and _alive(int(match["pid"])))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (directories: so that a rename inside it is durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path, mode: int = 0o644) -> Path:
    """fsync `tmp`, rename it onto `path`, fsync the directory."""
    tmp.chmod(mode)
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """`data` to `path` atomically and durably (parent created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        tmp.write_bytes(data)
        return commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def nearest_existing(path: Path) -> Path:
    """`path` if it exists, else its nearest existing ancestor: what making `path` (with its parents) meets first."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def describe_os_error(e: OSError) -> str:
    """One line for a failed write: disk full and permissions named as such."""
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    if e.errno == errno.ENOSPC:
        return f"no space left on device{where}"
    if e.errno == errno.EFBIG:
        return f"file too large for the file system or the file-size limit (ulimit -f){where}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not writable{where}: {e.strerror}"
    return f"{e.strerror or e}{where}"


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit(143) in the main thread, so `finally` blocks remove temporaries
    and stop child processes exactly as on Ctrl-C."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def signals_deferred():
    """SIGINT and SIGTERM that arrive inside the block act when it ends, so that a step such as
    "start a child process and keep its handle" is never cut in two: a signal inside
    `subprocess.Popen` would leave the child running, unknown to the code that stops it. Only in
    the main thread (Python runs signal handlers there; elsewhere the block is a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT,
                                                                                          signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:  # as the handler in place before the block would have acted
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), pending[0])


class Lock:
    """An exclusive lock file `<path>.lock` (O_EXCL), held by one writer of `path` at a time;
    a lock whose process is gone is taken over."""

    def __init__(self, path: Path):
        self.file = path.parent / f".{path.name}.lock"

    def __enter__(self) -> "Lock":
        self.file.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None or _alive(owner):  # None: its writer is just starting
                    target = self.file.parent / self.file.name[1:-len(".lock")]
                    raise FileExistsError(f"another process (pid {owner}) is writing {target} "
                                          f"(lock file {self.file})") from None
                self.file.unlink(missing_ok=True)  # its writer died
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise FileExistsError(f"cannot take the lock {self.file}")

    def __exit__(self, *exc) -> None:
        self.file.unlink(missing_ok=True)

    def _owner(self) -> int | None:
        try:
            return int(self.file.read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
