"""progress.fori_loop_reporting: the steps run once each, in order, and the reports land on the
grid of `interval` (offset included, traced or not) and on `total`, from outside the step loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import progress as P


@pytest.mark.parametrize("lower, upper, offset, interval, total", [
    (0, 11, 0, 5, 12),  # the LM sampler: the last step is reported after the loop
    (0, 12, 0, 4, 12),  # the grid ends on total
    (0, 7, 9, 4, 16),  # a group of the streamed LM starting at step 9, ending on total
    (0, 7, 2, 3, 21),  # a middle group
    (3, 4, 0, 2, 10),  # one step, on the grid
])
def test_reports_land_on_the_grid_and_every_step_runs_once(lower, upper, offset, interval, total):
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
    counts = [offset + i + 1 for i in range(lower, upper)]
    assert sorted(e.step for e in events) == [c for c in counts if c % interval == 0 or c == total]
    assert {(e.stage, e.event, e.total) for e in events} <= {("stage", "step", total)}


def test_without_progress_it_is_the_plain_loop():
    calls = []

    def fori(lo, hi, body, state):
        calls.append((lo, hi))
        return jax.lax.fori_loop(lo, hi, body, state)

    out = P.fori_loop_reporting(2, 9, lambda i, s: s + i, 0, None, "stage", 9, 3, anchor=lambda s: s, fori_loop=fori)
    assert int(out) == sum(range(2, 9)) and calls == [(2, 9)]
