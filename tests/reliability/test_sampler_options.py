"""Found by tools/fault_sweep.py (issue 13): sampler settings that compute no schedule, and a
top-k beyond the vocabulary, are refused by `check_options` before any weight is read; they used
to run the whole model first (a garbage video for one step, tracebacks for the others)."""

import pytest

from landiff_jax.config import LanDiffConfig
from landiff_jax.diffusion.schedule import step_schedule
from landiff_jax.pipeline import GenerateOptions, check_options, sampler_config

TINY = LanDiffConfig.tiny()


@pytest.mark.parametrize("options, message", [
    (GenerateOptions(steps=1), r"steps must be in \[2, 999\], got 1"),
    (GenerateOptions(steps=1000), r"steps must be in \[2, 999\], got 1000"),
    (GenerateOptions(dit_guidance_exp=2.5), "dit_guidance_exp must be a whole number"),
    (GenerateOptions(dit_guidance_exp=1000.0), "dit_guidance_exp 1000 makes the dynamic CFG scale overflow"),
    (GenerateOptions(dit_guidance=1e308), "gives a guidance scale beyond float32"),
    (GenerateOptions(lm_guidance=-2.0), r"lm_guidance must be >= 0 \(0: no guidance\), got -2"),
    (GenerateOptions(dit_guidance=-1.0), "dit_guidance must be >= 0"),
    (GenerateOptions(top_k=TINY.lm.vocab_size + 1), f"top_k must be <= {TINY.lm.vocab_size}"),
])
def test_refused_before_any_weight(options, message):
    with pytest.raises(ValueError, match=message):
        check_options(TINY, options)


def test_one_step_has_no_schedule_and_two_steps_do():
    import numpy as np

    with np.errstate(all="ignore"):
        one = step_schedule(sampler_config(TINY, GenerateOptions(steps=1)))
    assert not np.isfinite(one.alphas).all()  # why one step is refused: its zero-SNR rescale divides by zero
    check_options(TINY, GenerateOptions(steps=2, dit_guidance=0.0, lm_guidance=0.0, top_k=TINY.lm.vocab_size))
    assert np.isfinite(step_schedule(sampler_config(TINY, GenerateOptions(steps=2))).alphas).all()
