"""The LM written one group at a time (tiny model, random weights, float32): the groups equal the
one-shot sampler's sequence (the original's for T frames, checked by the lm parity cases), one
compiled function serves every group, and the sliding window keeps positions in the cache."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import progress as P
from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.model import abstract_params
from landiff_jax.lm.sampler import SampleOptions, sample
from landiff_jax.lm.stream import GroupStream, slide

CFG = LMConfig.tiny()
LENGTHS = [5, 2]  # two prompts, the second left-padded
OPTIONS = SampleOptions.create(guidance_scale=4.0, temperature=0.9, top_p=0.8)


@pytest.fixture(autouse=True, scope="module")
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def setup():
    n = max(LENGTHS)
    hidden = jax.random.normal(jax.random.key(1), (len(LENGTHS), n, CFG.text_dim))
    mask = np.arange(n)[None, :] >= (n - np.asarray(LENGTHS))[:, None]
    rng = np.random.default_rng(0)  # numpy draws: a jitted init compiles longer than the tests run
    params = jax.tree.map(lambda a: jnp.asarray(0.3 * rng.standard_normal(a.shape), jnp.float32),
                          nn.meta.unbox(abstract_params(CFG)))
    return dict(params=params, hidden=hidden, mask=mask, keys=jax.random.split(jax.random.key(7), len(LENGTHS)))


def stream(s, frames, **kw):
    return GroupStream(s["params"], CFG, s["hidden"], s["mask"], num_frames=frames, motion_score=[0.5, 3.0],
                       options=OPTIONS, rng=s["keys"], **kw)


def one_shot(s, frames):
    return np.asarray(sample(s["params"], CFG, s["hidden"], s["mask"], num_frames=frames, motion_score=[0.5, 3.0],
                             options=OPTIONS, rng=s["keys"]).codes)


@pytest.mark.parametrize("frames", [7])  # groups of 3, 3 and a partial 1 (sampled whole, cut)
def test_groups_equal_the_one_shot_sequence_with_one_compile(setup, frames, compilations):
    groups = stream(setup, frames)
    assert groups.groups == 3 and groups.window == 3
    codes, traces = [], []
    for _ in range(groups.groups):
        codes.append(groups.next_group())
        traces.append(compilations.traces)
    assert traces[2] == traces[1], "the third group traced something new"
    per_group = CFG.iframe_tokens + (CFG.segment_length - 1) * CFG.pframe_tokens
    assert all(c.shape == (2, per_group) for c in codes)
    expected = one_shot(setup, frames)
    wanted = L.num_codes(frames, CFG.iframe_tokens, CFG.pframe_tokens, CFG.segment_length)
    np.testing.assert_array_equal(np.concatenate(codes, axis=1)[:, :wanted], expected)
    with pytest.raises(StopIteration):
        groups.next_group()


def test_sliding_window_keeps_the_first_groups_and_runs_on(setup):
    full = one_shot(setup, 7)
    groups = stream(setup, 7, window=1)
    assert groups.window == 1
    codes = [groups.next_group() for _ in range(3)]
    np.testing.assert_array_equal(codes[0], full[:, :codes[0].shape[1]])  # before any slide
    assert all(np.isin(c, np.arange(CFG.codebook_size)).all() for c in codes)
    with pytest.raises(ValueError, match="at least one group"):
        stream(setup, 7, window=0)


def test_slide_moves_later_slots_down_with_keys_rotated_back():
    """Reference: RoPE as complex multiplication of (even, odd) pairs by exp(i·position·θ_f)."""
    rng = np.random.default_rng(0)
    r, h, t, d = 2, CFG.num_heads, 12, CFG.head_dim
    k, v = (rng.standard_normal((r, h, t, d)).astype(np.float32) for _ in range(2))
    start, shift = 3, 4
    (k2, v2), = slide(((jnp.asarray(k), jnp.asarray(v)),), cfg=CFG, start=start, shift=shift)
    theta = CFG.rope_theta ** (-np.arange(0, d, 2) / d)
    pairs = k[..., 0::2] + 1j * k[..., 1::2]
    rotated = pairs[:, :, start + shift:] * np.exp(-1j * shift * theta)
    np.testing.assert_allclose(np.asarray(k2)[:, :, :start], k[:, :, :start])
    np.testing.assert_allclose(np.asarray(k2)[:, :, start:t - shift, 0::2], rotated.real, atol=1e-5)
    np.testing.assert_allclose(np.asarray(k2)[:, :, start:t - shift, 1::2], rotated.imag, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(v2)[:, :, start:t - shift], v[:, :, start + shift:])


def test_progress_reports_across_the_groups_and_changes_nothing(setup):
    """Each group's loop reports after each block of about 5 steps (`progress.block_length`) and
    after its last step, counted over the whole sequence."""
    events = []
    plain, reported = stream(setup, 7), stream(setup, 7, progress=events.append, progress_every=5)
    codes = [plain.next_group() for _ in range(plain.groups)]
    codes_reported = [reported.next_group() for _ in range(reported.groups)]
    np.testing.assert_array_equal(np.concatenate(codes, 1), np.concatenate(codes_reported, 1))
    (total,) = {e.total for e in events if e.event == "step"}
    group = total // reported.groups
    length = P.block_length(group, 5)
    assert group // length >= 2  # several reports in every group
    want = [g * group + end for g in range(reported.groups) for end in [*range(length, group, length), group]]
    assert [e.step for e in events if e.event == "step"] == want
