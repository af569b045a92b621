"""Stopping a run cleanly. SIGTERM (a scheduler's preemption notice, `timeout`, `kill`) or
Ctrl-C during training lets the update under way finish, saves a checkpoint of it and raises
`Stopped`; the same command with --resume continues from there, as if nothing had stopped.

One process: Python signal handlers, for the duration of the loop. A second Ctrl-C stops at once
(KeyboardInterrupt); a repeated SIGTERM changes nothing (a process group's members may each pass
one on). Several processes: jax's preemption sync point. The coordination service notices a
SIGTERM on any process and every process stops after the same update (a signal seen by one
process alone must not make it save while the others step on); Ctrl-C keeps Python's default.
"""

from __future__ import annotations

import signal
import threading

import jax
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """The run stopped on a signal after `update`, with that update's checkpoint saved."""

    def __init__(self, update: int, signum: int):
        self.update, self.exit_code = update, 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} after update {update}; its checkpoint "
                         f"is saved: run the same command with --resume to continue")


class StopRequests:
    """`with StopRequests() as stop:` … `stop.requested(update)` after each update: the signal
    number when the run should save and stop there, else None (every process calls it at every
    update: with several processes it is a collective sync point)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> StopRequests:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _note(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: do not wait for the save
        self.signum = self.signum or signum

    def requested(self, update: int) -> int | None:
        if jax.process_count() > 1 and multihost_utils.reached_preemption_sync_point(update):
            self.signum = signal.SIGTERM
        return self.signum
