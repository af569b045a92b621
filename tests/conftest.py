"""Shared test fixtures, and one compilation cache for the session.

`fixtures_dir` is ../shared/fixtures next to the checkout (or $LANDIFF_FIXTURES); `torch` is
torch, which only the `convert` extra installs (tests that read the released .pt files or
compare with torch code take it). On a user's machine without them, those tests skip with a
message; under CI (CI=true, where .ci/run installs both) their absence fails.

Compile time is most of the suite's time, so the session (and the tools' subprocesses, which
inherit the environment) compiles with XLA's CPU backend unoptimised: `--xla_backend_optimization_level=0`
in XLA_FLAGS skips LLVM's optimisation passes, not XLA's own (fusion, layout), and takes about 40 %
less CPU; the numbers are those of the same computation, within the tests' tolerances. An
XLA_FLAGS that sets the level itself is kept. The compiles (of at least a second) go to a fresh
persistent JAX cache, so that a computation compiled by several tests or processes (the same
module, shapes and flags) compiles once: a hit loads the executable the same compile produced. A
cache the user set ($JAX_COMPILATION_CACHE_DIR) is used instead. The tools' own cache flag
defaults to it (`runtime.default_cache_dir`, unless $LANDIFF_JAX_COMPILATION_CACHE is set), so
the tools the tests run share it and write nothing to ~/.cache.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_CACHE = "JAX_COMPILATION_CACHE_DIR"  # runtime.JAX_CACHE_ENV (not imported: jax loads later)
_SESSION_CACHE = pytest.StashKey[str]()
_FAST_COMPILE = "--xla_backend_optimization_level=0"


def pytest_configure(config):
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:  # read when the backend starts, after this
        os.environ["XLA_FLAGS"] = f"{flags} {_FAST_COMPILE}".strip()
    if os.environ.get(_CACHE):
        return
    directory = tempfile.mkdtemp(prefix="landiff-jax-test-cache-")
    os.environ[_CACHE] = config.stash[_SESSION_CACHE] = directory
    if "jax" in sys.modules:  # read its environment already: tell it directly
        sys.modules["jax"].config.update("jax_compilation_cache_dir", directory)


def pytest_unconfigure(config):
    directory = config.stash.get(_SESSION_CACHE, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
        del os.environ[_CACHE]


def _fixtures_root() -> Path:
    return Path(os.environ.get("LANDIFF_FIXTURES", REPO.parent / "shared" / "fixtures"))


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    root = _fixtures_root()
    if not root.is_dir():
        _skip_or_fail(f"parity fixtures not found at {root} (set LANDIFF_FIXTURES)")
    return root


@pytest.fixture(scope="session")
def torch():
    try:
        import torch
    except ImportError:
        _skip_or_fail("needs torch, which is not installed: pip install 'landiff-jax[convert]' "
                      "(its CPU build: see the README)")
    return torch


class Compilations:
    """XLA traces and compilations seen while counting (jax.monitoring's public events): a jitted
    function traces once per new cache entry, so `traces` counts cache misses, eager ops
    included; `traced` names the functions traced, in order (where jax names them)."""

    TRACE, COMPILE = "/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.compiles = 0
        self.traced: list[str | None] = []

    @property
    def traces(self) -> int:
        return len(self.traced)

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event == self.TRACE:
            self.traced.append(kwargs.get("fun_name"))
        self.compiles += event == self.COMPILE

    def __enter__(self) -> "Compilations":
        import jax

        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc) -> None:
        import jax

        jax.monitoring.unregister_event_duration_listener(self)


@pytest.fixture
def compilations():
    with Compilations() as counter:
        yield counter


class PersistentCache(logging.Handler):
    """What jax's persistent compilation cache says of each function compiled while attached
    (its compiler's debug log): `seen` the functions it looked up, `refused` those it will never
    keep because they hold a host callback (they compile again in every process)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seen: set[str] = set()
        self.refused: set[str] = set()

    def emit(self, record):
        message = record.getMessage()
        names = set(re.findall(r"'(jit_\w+)'", message))
        self.seen |= names
        if "host callbacks" in message:
            self.refused |= names


@pytest.fixture
def persistent_cache():
    logger, handler = logging.getLogger("jax._src.compiler"), PersistentCache()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="session")
def tool_module():
    """tool_module(name): tools/<name>.py loaded as a module, once per session (a tool defines
    absl flags, which a second load would define again)."""
    loaded = {}

    def load(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(f"{name}_tool", REPO / "tools" / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    return load


@pytest.fixture
def quiet_mode():
    """absl verbosity WARNING, as `cli.quiet_libraries(False)` leaves it."""
    from absl import logging

    before = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)
    yield
    logging.set_verbosity(before)


@pytest.fixture(scope="session")
def tools_refuse():
    """tools_refuse({name: ([tool.py, *args], error line)}): every tool run at once as a
    subprocess (CPU); each must exit 2 with exactly its one error line on stderr. Returns
    {name: stdout}, for the caller's checks that nothing heavy started."""
    import subprocess

    def run(runs: dict[str, tuple[list[str], str]]) -> dict[str, str]:
        env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
        procs = {name: subprocess.Popen([sys.executable, str(REPO / "tools" / args[0]), *args[1:]], env=env,
                                        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for name, (args, _) in runs.items()}
        outs = {}
        for name, proc in procs.items():
            outs[name], err = proc.communicate(timeout=300)
            assert proc.returncode == 2, (name, err[-2000:])
            assert err.strip().splitlines() == [runs[name][1]], (name, err[-2000:])
        return outs

    return run
