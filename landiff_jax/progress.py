"""Progress of a generation: events, their reporting from inside jitted loops, and a display.

A progress callback takes one `Progress` event (its `str` is a readable line, so `print` is a
callback). The samplers take it as a STATIC argument: with None nothing is traced and the loop
costs nothing more; with a callable, every `every` steps (static) the loop calls it on the host
through `jax.debug.callback`. A new callable compiles the loop again: pass the same one (the
pipeline passes its own `Relay`, which forwards to the callback of the current call).
"""

from __future__ import annotations

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


def report_step(progress: Callback | None, stage: str, done, total: int, interval: int, anchor=None) -> None:
    """Inside a traced loop: progress(Progress(stage, 'step', done, total)) on the host when
    `done` (traced step count) is a multiple of `interval` or the last. `anchor`: a scalar of
    the step's result, so that the report waits for the step. Traces nothing without progress."""
    if progress is None:
        return
    emit = lambda d, *_: progress(Progress(stage, "step", int(d), total))  # noqa: E731
    args = (done,) if anchor is None else (done, anchor)
    jax.lax.cond((done % interval == 0) | (done == total), lambda: jax.debug.callback(emit, *args), lambda: None)


def block_length(steps: int, interval: int) -> int:
    """The static length of a reporting block in a loop of `steps` steps, about `interval`: a
    divisor of `steps` in [interval, 2·interval] when there is one (then every block is one inner
    loop), else `interval` (the remainder becomes a second inner loop, compiled apart)."""
    interval = max(1, min(interval, steps))
    return next((d for d in range(interval, min(2 * interval, steps) + 1) if steps % d == 0), interval)


def fori_loop_reporting(lower: int, upper: int, body, init, progress: Callback | None, stage: str, total: int,
                        interval: int, anchor: Callable, offset: int = 0, fori_loop: Callable = jax.lax.fori_loop):
    """`fori_loop(lower, upper, body, init)` (static bounds) that reports `offset + i + 1` of
    `total` after every `block_length(upper - lower, interval)` steps from `lower` and after the
    last step (offset may be traced), from OUTSIDE the step loop: an outer loop over blocks, each
    block an inner loop of a static trip count whose body holds no host callback (a callback in a
    loop body, or a trip count known only at run time, keeps XLA from running the loop as it runs
    the plain one: a fixed cost on every step of a fast loop, the LM's). anchor(state): a scalar of
    the state that the report waits for. Without progress: the plain loop."""
    if progress is None or upper <= lower:
        return fori_loop(lower, upper, body, init)
    emit = lambda d, *_: progress(Progress(stage, "step", int(d), total))  # noqa: E731
    length = block_length(upper - lower, interval)
    blocks, rest = divmod(upper - lower, length)

    def block(k, state):
        start = lower + k * length
        state = fori_loop(0, length, lambda j, s: body(start + j, s), state)
        jax.debug.callback(emit, offset + start + length, anchor(state))
        return state

    state = jax.lax.fori_loop(0, blocks, block, init)
    if rest:
        state = fori_loop(upper - rest, upper, body, state)
        jax.debug.callback(emit, offset + upper, anchor(state))
    return state


def call_jitted(jitted, args: tuple, static: dict[str, Any], stage: str, progress: Callback | None,
                compile_only: bool = False):
    """jitted(*args, **static); with progress,
    compiled explicitly first (JAX keeps the lowering and the executable, so a second call
    reports ~0 s) and the compile time reported. compile_only: return the compiled function
    (args may hold `jax.ShapeDtypeStruct`s; a later call with arrays like them compiles nothing)."""
    if compile_only:
        return jitted.lower(*args, **static).compile()
    if progress is None:
        return jitted(*args, **static)
    progress(Progress(stage, "compile"))
    start = time.perf_counter()
    compiled = jitted.lower(*args, **static).compile()
    progress(Progress(stage, "compiled", seconds=time.perf_counter() - start))
    return compiled(*args)


class Relay:
    """A fixed static callback for the jitted loops that forwards to `target` (or drops)."""

    def __init__(self):
        self.target: Callback | None = None

    def __call__(self, event: Progress) -> None:
        if self.target is not None:
            self.target(event)


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
