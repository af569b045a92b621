"""progress.fori_loop_reporting: the steps run once each, in order, and the reports land after
every block of static length (offset included, traced or not) and after the last step, from
outside the step loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import progress as P


@pytest.mark.parametrize("lower, upper, offset, interval, total, reported", [
    (0, 11, 0, 5, 12, [5, 10, 11]),  # the LM sampler (its last step is reported after the loop); a remainder
    (0, 12, 0, 4, 12, [4, 8, 12]),  # blocks that divide the loop
    (0, 14, 0, 4, 14, [7, 14]),  # a divisor within twice the interval is preferred: no remainder loop
    (0, 7, 9, 4, 16, [16]),  # a group of the streamed LM starting at step 9: one block of 7, ending on total
    (0, 7, 2, 3, 21, [5, 8, 9]),  # a middle group
    (3, 4, 0, 2, 10, [4]),  # one step
])
def test_reports_after_each_block_and_every_step_runs_once(lower, upper, offset, interval, total, reported):
    events = []

    def body(i, state):  # the state records the order of the steps
        order, count = state
        return order.at[count].set(i), count + 1

    @jax.jit
    def run(offset):
        init = (jnp.full((upper - lower,), -1), jnp.int32(0))
        return P.fori_loop_reporting(lower, upper, body, init, events.append, "stage", total, interval,
                                     anchor=lambda state: state[1], offset=offset)

    order, count = jax.block_until_ready(run(jnp.int32(offset)))  # offset traced, as in the streamed LM
    np.testing.assert_array_equal(order, np.arange(lower, upper))
    assert int(count) == upper - lower
    assert [e.step for e in events] == reported
    assert {(e.stage, e.event, e.total) for e in events} <= {("stage", "step", total)}


def test_without_progress_it_is_the_plain_loop():
    calls = []

    def fori(lo, hi, body, state):
        calls.append((lo, hi))
        return jax.lax.fori_loop(lo, hi, body, state)

    out = P.fori_loop_reporting(2, 9, lambda i, s: s + i, 0, None, "stage", 9, 3, anchor=lambda s: s, fori_loop=fori)
    assert int(out) == sum(range(2, 9)) and calls == [(2, 9)]


@pytest.mark.parametrize("steps, interval, length", [(1243, 63, 113), (331, 63, 63), (75, 63, 75), (5, 63, 5)])
def test_block_length_prefers_a_divisor(steps, interval, length):
    assert P.block_length(steps, interval) == length
