"""Closed-form schedule tables of the zero-SNR, SNR-shifted DDPM discretization, and the
per-step constants of the guided DPM++(2M) SDE sampler — all computed on the host in numpy.

Float64 where the original is float64 (betas, cumulative products, the shift, DynamicCFG in
Python floats), float32 where it works on float32 tensors (the zero-SNR rescale).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def alphas_cumprod_shifted(num_timesteps: int, shift_scale: float,
                           linear_start: float = 0.00085, linear_end: float = 0.012) -> np.ndarray:
    """[num_timesteps] float64: cumprod(1 − β) with β = linspace(√start, √end)², then SNR-shifted
    ā/(s + (1 − s)ā)."""
    betas = np.linspace(linear_start**0.5, linear_end**0.5, num_timesteps, dtype=np.float64) ** 2
    acp = np.cumprod(1.0 - betas)
    return acp / (shift_scale + (1.0 - shift_scale) * acp)


def zero_snr_sqrt(alphas_cumprod: np.ndarray) -> np.ndarray:
    """sqrt(ā) in float32, rescaled on THIS subset (ascending timesteps) so its last entry is 0 and
    its first is unchanged: a ← (a − a_last)·a_first/(a_first − a_last)."""
    a = np.sqrt(np.asarray(alphas_cumprod, np.float64).astype(np.float32))
    first, last = a[0], a[-1]
    return ((a - last) * (first / (first - last))).astype(np.float32)


def step_timesteps(num_steps: int, num_timesteps: int = 1000) -> np.ndarray:
    """Ascending sampled timesteps, e.g. 4 → [249, 499, 749, 999] (never 0)."""
    if not 1 <= num_steps < num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}), got {num_steps}")
    return np.linspace(num_timesteps - 1, 0, num_steps, endpoint=False).astype(np.int64)[::-1].copy()


def denoiser_sigma_table(num_idx: int, shift_scale: float) -> np.ndarray:
    """The DiscreteDenoiser's [num_idx] float32 table (index = timestep): the zero-SNR rescale
    applied to all entries."""
    return zero_snr_sqrt(alphas_cumprod_shifted(num_idx, shift_scale))


def dynamic_cfg_scale(step_index: int, scale: float, exp: float, num_steps: int) -> float:
    """DynamicCFG: 1 + scale·(1 − cos(π·(step_index/num_steps)^exp))/2 in Python float64.
    The sampler passes step_index = num_steps − timestep, which is negative and makes the cosine's
    argument huge — float32 would give a different value."""
    return 1.0 + scale * (1.0 - math.cos(math.pi * (step_index / num_steps) ** exp)) / 2.0


@dataclasses.dataclass(frozen=True)
class StepSchedule:
    """Per-step arrays of an n-step run, step i = 0 … n−1 (numpy; the scan's xs).

    Update: den_d = w_cur·den − w_old·den_prev; x ← mult1·x − mult2·den_d + noise_mult·ε.
    Step 0 (ā = 0 ⇒ λ = −∞) has mult1 = 0 and (w_cur, w_old) = (1, 0); at step 1 r = ∞ also gives
    (1, 0). The last step returns the x0 prediction: (mult1, mult2, w_cur, w_old, noise_mult) =
    (0, −1, 1, 0, 0).
    """

    alphas: np.ndarray  # [n+1] float32: 0 … , 1.0 appended (sqrt(ā), descending noise)
    timesteps: np.ndarray  # [n+1] int64: −1 then ascending timesteps; step i uses timesteps[−(i+1)]
    cfg_step_index: np.ndarray  # [n] int64: num_steps − timestep (DynamicCFG's step_index)
    cfg_scale: np.ndarray  # [n] float64
    mult1: np.ndarray  # [n] float32 (this and the rest)
    mult2: np.ndarray
    w_cur: np.ndarray
    w_old: np.ndarray
    noise_mult: np.ndarray

    @property
    def num_steps(self) -> int:
        return len(self.cfg_scale)

    @property
    def step_alpha(self) -> np.ndarray:
        return self.alphas[:-1]

    @property
    def step_alpha_next(self) -> np.ndarray:
        return self.alphas[1:]

    @property
    def step_timestep(self) -> np.ndarray:
        return self.timesteps[::-1][: self.num_steps].copy()

    @property
    def step_idx(self) -> np.ndarray:
        """The original's idx = num_steps − i (1 at the last step)."""
        return np.arange(self.num_steps, 0, -1, dtype=np.int64)


def _log_snr(a: np.ndarray) -> np.ndarray:
    """λ = log(a/sqrt(1 − a²)) in float64 (−∞ at a = 0)."""
    a = a.astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.log(np.sqrt(a**2 / (1.0 - a**2)))


def step_schedule(sampler_cfg) -> StepSchedule:
    """Every per-step constant of VPSDEDPMPP2MSampler for `sampler_cfg` (a SamplerConfig)."""
    n = sampler_cfg.num_steps
    t = step_timesteps(n, sampler_cfg.num_timesteps)
    acp = alphas_cumprod_shifted(sampler_cfg.num_timesteps, sampler_cfg.shift_scale,
                                 sampler_cfg.linear_start, sampler_cfg.linear_end)
    alphas = np.concatenate([zero_snr_sqrt(acp[t])[::-1], np.ones(1, np.float32)])
    timesteps = np.concatenate([np.full(1, -1, np.int64), t])
    step_t = timesteps[::-1][:n]
    step_index = (n - step_t).astype(np.int64)
    cfg = np.array([dynamic_cfg_scale(int(s), sampler_cfg.cfg_scale, sampler_cfg.cfg_exp,
                                      sampler_cfg.cfg_num_steps) for s in step_index], np.float64)

    a, a_next = alphas[:-1].astype(np.float64), alphas[1:].astype(np.float64)
    mult1 = np.zeros(n)
    mult2 = np.full(n, -1.0)
    w_cur, w_old, noise_mult = np.ones(n), np.zeros(n), np.zeros(n)
    lam = _log_snr(alphas[:-1])
    for i in range(n - 1):  # the last step keeps the "return x0" coefficients
        h = _log_snr(alphas[i + 1 : i + 2])[0] - lam[i]
        mult1[i] = math.sqrt((1.0 - a_next[i] ** 2) / (1.0 - a[i] ** 2)) * math.exp(-h)
        mult2[i] = math.expm1(-2.0 * h) * a_next[i]
        noise_mult[i] = math.sqrt(1.0 - a_next[i] ** 2) * math.sqrt(-math.expm1(-2.0 * h))
        if i >= 1:
            r = (lam[i] - lam[i - 1]) / h
            w_old[i] = 0.0 if math.isinf(r) else 1.0 / (2.0 * r)
            w_cur[i] = 1.0 + w_old[i]
    f32 = lambda v: np.asarray(v, np.float32)
    return StepSchedule(alphas, timesteps, step_index, cfg, f32(mult1), f32(mult2), f32(w_cur), f32(w_old),
                        f32(noise_mult))


def used_noise_draws(num_steps: int) -> np.ndarray:
    """Indices into the original's stream of `randn_like` draws (step 0: one; middle steps: two,
    the first discarded; last step: none) of the draw each step uses; [n−1]."""
    return np.array(([0] if num_steps > 1 else []) + [2 * i for i in range(1, num_steps - 1)], np.int64)


def num_noise_draws(num_steps: int) -> int:
    return max(0, 1 + 2 * (num_steps - 2))
