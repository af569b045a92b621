"""Timing helpers shared by every benchmark in tools/bench/ (one JSON line of figures each).

Usage inside a stage script:
    from common import time_jitted, peak_memory_gb, emit
    compile_s, ms = time_jitted(fn, *args, repeats=5)
    emit({"stage": "vae", "ms_per_call": ms, "compile_s": compile_s, **peak_memory_gb()})
"""

from __future__ import annotations

import datetime
import json
import time

import jax


def time_jitted(fn, *args, repeats: int = 5, warmup: int = 1):
    """(compile seconds, median ms per call after compile) of a jitted `fn(*args)`."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile() if hasattr(fn, "lower") else fn
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return compile_s, times[len(times) // 2]


def peak_memory_gb() -> dict:
    """Peak bytes in use on device 0 (GPU/TPU), if the backend reports it."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return {"peak_memory_gb": round(peak / 2**30, 3)} if peak is not None else {}


def emit(figures: dict) -> None:
    figures = {"date": datetime.date.today().isoformat(), "device": jax.devices()[0].device_kind,
               "n_devices": jax.device_count(), **figures}
    print(json.dumps(figures), flush=True)


class CompileClock:
    """Seconds jax spends tracing, lowering and compiling (jax.monitoring's public events), eager
    ops and every stage included, so that a run's time can exclude its compiles. announce: print
    each backend compile of at least that many seconds as it ends (a long one is seen before the
    run that waits for it ends)."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self, announce: float | None = None):
        self.seconds = 0.0
        self.announce = announce
        jax.monitoring.register_event_duration_secs_listener(self)

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event in self.EVENTS:
            self.seconds += duration
        if self.announce is not None and event == self.EVENTS[-1] and duration >= self.announce:
            print(f"compiled {kwargs.get('fun_name') or 'a function'} in {duration:.1f} s", flush=True)


def op_times(fn, repeats: int, top: int = 25) -> None:
    """Trace `repeats` calls of `fn` (returning device arrays) with jax's profiler and print the
    device time of each compiled op (the 'XLA Ops' line of each GPU/TPU plane; kernels of the
    'Stream' lines where a plane has none), busiest first, with the traced wall time: what an
    update spends its time on. The CPU backend traces no device ops."""
    import collections
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        jax.block_until_ready(fn())
        start = time.perf_counter()
        with jax.profiler.trace(directory):
            for _ in range(repeats):
                out = fn()
            jax.block_until_ready(out)
        wall_ms = (time.perf_counter() - start) * 1e3
        data = jax.profiler.ProfileData.from_file(str(next(Path(directory).rglob("*.xplane.pb"))))
    totals, counts = collections.Counter(), collections.Counter()
    for plane in data.planes:
        if not plane.name.startswith("/device:"):
            continue
        lines = [line for line in plane.lines if line.name == "XLA Ops"] or \
            [line for line in plane.lines if line.name.startswith("Stream")]
        for event in (event for line in lines for event in line.events):
            totals[event.name] += event.duration_ns / 1e6
            counts[event.name] += 1
    busy = sum(totals.values())
    print(f"op_times: {repeats} calls, wall {wall_ms / repeats:.2f} ms per call, device ops "
          f"{busy / repeats:.2f} ms per call ({len(totals)} distinct ops)", flush=True)
    for name, ms in totals.most_common(top):
        print(f"  {ms / repeats:8.3f} ms  {100 * ms / max(busy, 1e-9):5.1f} %  x{counts[name] // repeats:<4d} {name}",
              flush=True)
