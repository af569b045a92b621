"""progress.run_blocks: the steps of a loop run once each, in order, as host calls of blocks (one
compiled function per block length, the start as data), and the reports land after every block,
offset included."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import progress as P


@functools.partial(jax.jit, static_argnames="length")
def record_steps(state, start, *, length):
    """Steps [start, start + length): each writes its number into the next free slot."""
    def body(j, state):
        order, count = state
        return order.at[count].set(start + j), count + 1

    return jax.lax.fori_loop(0, length, body, state)


@pytest.mark.parametrize("steps, offset, interval, total, reported", [
    (11, 0, 5, 12, [5, 10, 11]),  # the LM sampler (its last step is reported after the loop); a remainder
    (12, 0, 4, 12, [4, 8, 12]),  # blocks that divide the loop
    (14, 0, 4, 14, [7, 14]),  # a divisor within twice the interval is preferred: no remainder block
    (7, 9, 4, 16, [16]),  # a group of the streamed LM starting at step 9: one block of 7, ending on total
    (7, 2, 3, 21, [5, 8, 9]),  # a middle group
    (1, 3, 2, 10, [4]),  # one step
])
def test_every_step_runs_once_in_order_and_reports_follow_each_block(steps, offset, interval, total, reported):
    events, calls = [], []

    def run_block(state, start, length):
        calls.append((start, length))
        return record_steps(state, jnp.int32(start), length=length)

    init = (jnp.full((steps,), -1), jnp.int32(0))
    order, count = P.run_blocks(run_block, init, steps, events.append, "stage", total, interval,
                                ready=lambda state: state[1], offset=offset)
    np.testing.assert_array_equal(order, np.arange(steps))
    assert int(count) == steps
    assert calls == P.blocks(steps, interval) and {length for _, length in calls} <= {calls[0][1], calls[-1][1]}
    assert [e.step for e in events] == reported
    assert {(e.stage, e.event, e.total) for e in events} <= {("stage", "step", total)}


@pytest.mark.parametrize("steps, interval, length", [(1243, 63, 113), (331, 63, 63), (75, 63, 75), (5, 63, 5)])
def test_block_length_prefers_a_divisor(steps, interval, length):
    assert P.block_length(steps, interval) == length
