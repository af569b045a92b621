"""Equivalences of the cached, jitted sampler (tiny model with the fixture's weights, float32):
prefill + cached steps == uncached forward; the jitted loop == a Python loop over the same
step; a batch of prompts == each prompt alone; plus the output layout and input checks.

One sampler compilation (2 prompts of 5 and 2 tokens, guided top-p sampling, traced) is shared."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import progress as P
from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.convert import load_lm
from landiff_jax.lm.model import SemanticLM
from landiff_jax.lm.sampler import SampleOptions, micro_values, sample, sample_loop

CFG = LMConfig.tiny()  # the sizes of the public lm fixtures
FRAMES = 4  # one full group of 3 frames and a partial group of 1
LENGTHS = [5, 2]
SCORES = [0.5, 3.0]
OPTIONS = SampleOptions.create(guidance_scale=4.0, temperature=0.9, top_p=0.8)
TOL = dict(atol=2e-5, rtol=2e-5)


@pytest.fixture(autouse=True, scope="module")
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def params(fixtures_dir):
    return load_lm(fixtures_dir / "lm" / "one_group_cfg6p5" / "model.safetensors", CFG)


@pytest.fixture(scope="module")
def text():
    """Left-padded random T5 features of prompts of LENGTHS tokens."""
    n = max(LENGTHS)
    hidden = jax.random.normal(jax.random.key(1), (len(LENGTHS), n, CFG.text_dim))
    return hidden, np.arange(n)[None, :] >= (n - np.asarray(LENGTHS))[:, None]


@pytest.fixture(scope="module")
def keys():
    return jax.random.split(jax.random.key(7), len(LENGTHS))


@pytest.fixture(scope="module")
def batch(params, text, keys):
    hidden, mask = text
    return sample(params, CFG, hidden, mask, num_frames=FRAMES, motion_score=SCORES, options=OPTIONS, rng=keys,
                  trace=True)


def test_prefill_and_cached_steps_equal_uncached_forward(params, text, batch):
    """The sampler's per-step logits (prefill, then one cached step per fed token) equal an
    uncached forward over the prefix and the fed tokens."""
    hidden, mask = text
    micro = micro_values(CFG, FRAMES, SCORES, len(LENGTHS))
    fed = batch.tokens[:, :-1]  # the last draw is never fed back
    full = jax.jit(SemanticLM(CFG).apply, static_argnums=5)({"params": params}, hidden, mask, micro, fed, True)
    steps = fed.shape[1] + 1
    np.testing.assert_allclose(batch.logits, jnp.swapaxes(full[:, -steps:], 0, 1), **TOL)


def test_pallas_decode_attention_gives_the_same_steps(params, text, keys, batch):
    """The decode kernel used on GPU (interpreted here) samples the same tokens with the same
    per-step logits as the XLA attention."""
    hidden, mask = text
    pallas = sample(params, CFG.replace(decode_attention="pallas_interpret"), hidden, mask, num_frames=FRAMES,
                    motion_score=SCORES, options=OPTIONS, rng=keys, trace=True)
    np.testing.assert_array_equal(pallas.tokens, batch.tokens)
    np.testing.assert_allclose(pallas.logits, batch.logits, **TOL)


def test_jitted_loop_equals_python_loop(params, text, keys, batch):
    def python_fori(lo, hi, body, state):
        step_fn = jax.jit(body)  # the same step function, driven from Python
        for step in range(lo, hi):
            state = step_fn(step, state)
        return state

    hidden, mask = text
    micro = jnp.asarray(micro_values(CFG, FRAMES, SCORES, len(LENGTHS)))
    looped = sample_loop(params, hidden, jnp.asarray(mask), micro, keys, OPTIONS, None, cfg=CFG, num_frames=FRAMES,
                     trace=True, fori_loop=python_fori)
    np.testing.assert_array_equal(batch.tokens, looped.tokens)
    np.testing.assert_array_equal(batch.draws, looped.draws)
    np.testing.assert_array_equal(batch.codes, looped.codes)
    np.testing.assert_allclose(batch.logits, looped.logits, **TOL)


def test_batch_equals_each_prompt_alone(params, text, keys, batch):
    """The short prompt is left-padded in the batch and unpadded alone: same draws, same logits."""
    hidden, mask = text
    row, n = 1, LENGTHS[1]
    alone = sample(params, CFG, hidden[row:, -n:], mask[row:, -n:], num_frames=FRAMES, motion_score=SCORES[row],
                   options=OPTIONS, rng=keys[row:], trace=True)
    np.testing.assert_array_equal(batch.tokens[row], alone.tokens[0])
    np.testing.assert_array_equal(batch.codes[row], alone.codes[0])
    np.testing.assert_allclose(batch.guided[:, row], alone.guided[:, 0], **TOL)
    assert not np.array_equal(batch.tokens[0], batch.tokens[1])  # the rows did sample differently


def test_output_layout_and_first_frame(params, text, batch):
    lay = L.frame_layout(CFG.codebook_size, CFG.iframe_tokens, CFG.pframe_tokens, CFG.segment_length, FRAMES)
    tokens = np.asarray(batch.tokens)
    assert batch.codes.shape == (2, L.num_codes(FRAMES, CFG.iframe_tokens, CFG.pframe_tokens, CFG.segment_length))
    forced = lay.forced >= 0
    np.testing.assert_array_equal(tokens[:, forced], np.broadcast_to(lay.forced[forced], (2, forced.sum())))
    np.testing.assert_array_equal(batch.codes, np.clip(tokens[:, lay.code_steps], 0, CFG.codebook_size - 1))
    assert (tokens[:, -1] == lay.vocab[L.EOS]).all()
    # constrained steps drew an allowed special token
    allowed = lay.allowed_mask()
    draws = np.asarray(batch.draws)
    assert allowed[np.arange(lay.steps), draws].all()

    hidden, mask = text
    first = np.arange(2 * CFG.iframe_tokens).reshape(2, -1) % CFG.codebook_size
    gt = sample(params, CFG, hidden, mask, num_frames=FRAMES, motion_score=SCORES,
                options=SampleOptions.create(guidance_scale=2.0, greedy=True), first_frame_codes=first)
    np.testing.assert_array_equal(gt.codes[:, :CFG.iframe_tokens], first)
    assert gt.codes.shape == batch.codes.shape


def test_bad_inputs_are_refused(params, text):
    hidden, mask = text
    greedy = SampleOptions.create(guidance_scale=2.0, greedy=True)
    with pytest.raises(ValueError, match="left-padded"):
        sample(params, CFG, hidden, mask[:, ::-1], num_frames=3, motion_score=1.0, options=greedy)
    with pytest.raises(ValueError, match="hold no token"):
        sample(params, CFG, hidden, mask & False, num_frames=3, motion_score=1.0, options=greedy)
    with pytest.raises(ValueError, match="PRNG key"):
        sample(params, CFG, hidden, mask, num_frames=3, motion_score=1.0, options=SampleOptions.create(4.0))
    with pytest.raises(ValueError, match="max_len"):
        sample(params, CFG, hidden, mask, num_frames=200, motion_score=1.0, options=greedy)
    with pytest.raises(ValueError, match="first_frame_codes"):
        sample(params, CFG, hidden, mask, num_frames=3, motion_score=1.0, options=greedy,
               first_frame_codes=np.full((2, CFG.iframe_tokens), CFG.codebook_size))
    with pytest.raises(ValueError, match="together"):
        SampleOptions.create(top_k=3, top_p=0.5)


def test_progress_reports_after_each_block_and_changes_nothing(params, text, keys, batch, persistent_cache):
    """With a callback, the loop runs as host calls of blocks of about k sampled positions
    (`progress.block_length`) and reports after each and after the last draw, once each, plus
    its compile; the samples are the same as without (the shared `batch`), and no compiled part
    holds a host callback (so the persistent compilation cache keeps them all)."""
    hidden, mask = text
    events = []
    every = 5
    out = sample(params, CFG, hidden, mask, num_frames=FRAMES, motion_score=SCORES, options=OPTIONS, rng=keys,
                 trace=True, progress=events.append, progress_every=every)
    steps = batch.tokens.shape[1]
    length = P.block_length(steps - 1, every)
    assert (steps - 1) // length >= 2 and (steps - 1) % length  # several blocks and a remainder loop
    assert [e.event for e in events[:2]] == ["compile", "compiled"]
    reported = [e.step for e in events if e.event == "step"]
    want = list(range(length, steps - 1, length)) + [steps - 1, steps]
    assert reported == want, (reported, want)
    assert {(e.stage, e.total) for e in events[2:]} == {("LM sampler", steps)}
    np.testing.assert_array_equal(out.tokens, batch.tokens)
    np.testing.assert_array_equal(out.codes, batch.codes)
    np.testing.assert_array_equal(out.logits, batch.logits)
    assert {"jit_begin", "jit_run_steps", "jit_finish"} <= persistent_cache.seen and not persistent_cache.refused
