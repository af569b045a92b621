"""Progress of a generation: events, their reporting between the blocks of a loop, and a display.

A progress callback takes one `Progress` event (its `str` is a readable line, so `print` is a
callback). The samplers take it as an argument: with None a loop is one compiled call; with a
callable, the loop runs as host calls of blocks of about `every` steps (`run_blocks`) and the
callback hears the steps done after each block. No callback is compiled into a loop, so every
compiled function can enter the persistent compilation cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from typing import Any, Callable, TextIO

import jax

UPDATES = 20  # reports per loop at most (plus the last step)


@dataclasses.dataclass(frozen=True)
class Progress:
    """stage: what runs ('LM sampler', 'diffusion sampler', or a pipeline stage); event:
    'compile' (about to compile), 'compiled' (seconds: compile time, ~0 when already compiled),
    'start', 'step' (step of total done), 'done' (seconds: the stage's time)."""

    stage: str
    event: str
    step: int = 0
    total: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.event == "compile":
            return f"compiling the {self.stage}…"
        if self.event == "compiled":
            return f"compiled the {self.stage}: {self.seconds:.1f} s"
        if self.event == "step":
            return f"{self.stage}: {self.step}/{self.total}"
        if self.event == "done":
            return f"{self.stage}: {self.seconds:.1f} s"
        return f"{self.stage} …"


Callback = Callable[[Progress], None]


def every(total: int, updates: int = UPDATES) -> int:
    """The reporting interval (static) for a loop of `total` steps: at most `updates` reports."""
    return max(1, -(-total // updates))


def block_length(steps: int, interval: int) -> int:
    """The length of a reporting block in a loop of `steps` steps, about `interval`: a divisor of
    `steps` in [interval, 2·interval] when there is one (then every block has it), else
    `interval` (a shorter last block takes the rest, compiled apart)."""
    interval = max(1, min(interval, steps))
    return next((d for d in range(interval, min(2 * interval, steps) + 1) if steps % d == 0), interval)


def blocks(steps: int, interval: int) -> list[tuple[int, int]]:
    """(start, length) of the blocks of `run_blocks`, in order."""
    length = block_length(steps, interval)
    return [(start, min(length, steps - start)) for start in range(0, steps, length)]


def compile_blocks(jitted, args_of: Callable, state, static: dict[str, Any], steps: int, interval: int,
                   state_of: Callable = lambda out: out) -> dict:
    """Compile `jitted(*args_of(state), **static, length=n)` for every block length n of
    `blocks(steps, interval)`, for the first block's `state` and for a state that a block returns
    (`state_of(outputs)`: its placement can differ, e.g. committed to a device) → {n: the latter
    compiled}. args_of(state) may hold `jax.ShapeDtypeStruct`s; later calls of `jitted` with
    arrays like them run these executables."""
    compiled = {}
    for n in sorted({length for _, length in blocks(steps, interval)}):
        first = jitted.lower(*args_of(state), **static, length=n).compile()
        compiled[n] = jitted.lower(*args_of(state_of(first.out_info)), **static, length=n).compile()
    return compiled


def run_blocks(run_block: Callable, state, steps: int, progress: Callback, stage: str, total: int, interval: int,
               ready: Callable, offset: int = 0):
    """The steps [0, steps) of a loop as host calls `state = run_block(state, start, length)` (a
    jitted function of a static length, the start as data), one per block of `blocks(steps,
    interval)`, reporting `offset` + the steps done of `total` after each. The report of a block
    waits for `ready(state)` (an output that the next call does not donate) once the next block
    is queued, so the device does not wait for the host. Reporting from the host keeps host
    callbacks out of the compiled loops: jax's persistent cache keeps no executable holding one,
    so a loop that reported from inside was compiled again on every run."""
    pending = None
    for start, length in blocks(steps, interval):
        state = run_block(state, start, length)
        if pending is not None:
            report_when_ready(progress, stage, total, *pending)
        pending = offset + start + length, ready(state)
    if pending is not None:
        report_when_ready(progress, stage, total, *pending)
    return state


def report_when_ready(progress: Callback, stage: str, total: int, done: int, ready) -> None:
    """progress(step `done` of `total`) once the array `ready` is computed."""
    jax.block_until_ready(ready)
    progress(Progress(stage, "step", done, total))


@contextlib.contextmanager
def compiling(stage: str, progress: Callback | None):
    """Report what compiles inside as one compile of `stage` (its seconds) with progress."""
    if progress is not None:
        progress(Progress(stage, "compile"))
    start = time.perf_counter()
    yield
    if progress is not None:
        progress(Progress(stage, "compiled", seconds=time.perf_counter() - start))


def call_jitted(jitted, args: tuple, static: dict[str, Any], stage: str, progress: Callback | None,
                compile_only: bool = False):
    """jitted(*args, **static); with progress, compiled explicitly first (JAX keeps the lowering
    and the executable, so a second call reports ~0 s) and the compile time reported.
    compile_only: return the compiled function (args may hold `jax.ShapeDtypeStruct`s; a later
    call with arrays like them compiles nothing)."""
    if progress is None and not compile_only:
        return jitted(*args, **static)
    with compiling(stage, None if compile_only else progress):
        compiled = jitted.lower(*args, **static).compile()
    return compiled if compile_only else compiled(*args)


class Display:
    """A progress display for a terminal: one line per stage, steps redrawn in place (a line
    every ~10 % when the stream is not a terminal); compile times on their own line."""

    def __init__(self, stream: TextIO | None = None, min_interval: float = 0.2):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.min_interval = min_interval
        self._last = (None, -1, 0.0)  # (stage, step, time) of the last step drawn

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def __call__(self, event: Progress) -> None:
        if event.event == "compile":
            self._write(f"compiling the {event.stage}… ")
        elif event.event == "compiled":
            self._write("already compiled\n" if event.seconds < 0.05 else f"{event.seconds:.1f} s\n")
        elif event.event == "step":
            self._step(event)
        elif event.event == "done":
            self._end_steps()
            self._write(f"{event}\n")
        else:
            self._write(f"{event}\n")

    def _step(self, event: Progress) -> None:
        stage, step, at = self._last
        now = time.perf_counter()
        if stage == event.stage and event.step <= step:  # a late report: keep the line monotonic
            return
        final = event.step == event.total
        if self.tty:
            if final or now - at >= self.min_interval:
                self._write(f"\r  {event.stage}: step {event.step}/{event.total}")
                self._last = (event.stage, event.step, now)
            else:
                self._last = (event.stage, event.step, at)
            return
        tenth = max(1, event.total // 10)
        if final or event.step // tenth > max(step, 0) // tenth or stage != event.stage:
            self._write(f"  {event.stage}: step {event.step}/{event.total}\n")
        self._last = (event.stage, event.step, now)

    def _end_steps(self) -> None:
        if self.tty and self._last[0] is not None:
            self._write("\n")
        self._last = (None, -1, 0.0)
