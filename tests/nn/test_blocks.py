"""Shared building blocks: formulas, and RoPE tables against the original's stored tables."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import nn as lnn
from landiff_jax import runtime
from landiff_jax.nn.mlp import gelu_tanh


def test_attention_matches_masked_softmax():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 5, 3, 8)).astype(np.float32) for _ in range(3))
    mask = rng.random((2, 1, 5, 5)) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    out = lnn.dot_product_attention(q, k, v, mask=mask)
    scores = np.einsum("bshd,bthd->bhst", q, k) / math.sqrt(8)
    scores = np.where(mask, scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bhst,bthd->bshd", p, v), atol=1e-5)


@pytest.mark.parametrize("length", [71, 200, 256, (71, 200, 129)])
def test_decode_attention_kernel_reads_only_valid_slots(length):
    """The Pallas decode kernel (run by the Pallas interpreter on CPU) equals a masked softmax over
    slots start <= t < length, with per-row starts inside and across the kernel's blocks."""
    from landiff_jax.kernels.decode_attention import BLOCK, pallas_decode_attention

    rng = np.random.default_rng(2)
    b, h, slots, d = 3, 2, 4 * BLOCK, 16
    q = rng.standard_normal((b, h, d)).astype(np.float32)
    cache_k, cache_v = (rng.standard_normal((b, h, slots, d)).astype(np.float32) for _ in range(2))
    start, length = np.array([0, 5, 70]), np.broadcast_to(np.asarray(length), (b,))
    for row, n in enumerate(length):  # blocks past a row's length are never read
        cache_v[row, :, -(-n // BLOCK) * BLOCK:] = np.nan
    out = pallas_decode_attention(q, cache_k, cache_v, start, np.asarray(length), scale=d**-0.5, interpret=True)
    t = np.arange(slots)
    valid = (t[None, :] >= start[:, None]) & (t[None, :] < length[:, None])  # [b T]
    scores = np.where(valid[:, None], np.einsum("bhd,bhtd->bht", q, cache_k) / math.sqrt(d), -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    want = np.einsum("bht,bhtd->bhd", p / p.sum(-1, keepdims=True), np.nan_to_num(cache_v))
    np.testing.assert_allclose(np.asarray(out), want, atol=1e-5)
    xla = lnn.decode_attention(q, np.nan_to_num(cache_k), np.nan_to_num(cache_v), start, np.asarray(length),
                               implementation="xla")
    np.testing.assert_allclose(np.asarray(xla), want, atol=1e-5)


@pytest.mark.parametrize("dtype,lengths", [(jnp.bfloat16, (300, 200)), (jnp.float16, (512, 517))])
def test_hopper_attention_lowers_for_hopper(dtype, lengths):
    """The Mosaic GPU kernel traces and lowers for CUDA on any machine (ragged query and key
    tails, both half dtypes); it runs on Hopper GPUs only (numbers: the next test)."""
    from landiff_jax.kernels import hopper_attention

    s, t = lengths
    q, kv = jax.ShapeDtypeStruct((2, s, 3, 64), dtype), jax.ShapeDtypeStruct((2, t, 3, 64), dtype)
    lowered = jax.jit(hopper_attention).trace(q, kv, kv).lower(lowering_platforms=("cuda",))
    assert "mosaic_gpu" in lowered.as_text()
    out = jax.eval_shape(hopper_attention, q, kv, kv)
    assert (out.shape, out.dtype) == ((2, s, 3, 64), jnp.dtype(dtype))


@pytest.mark.skipif(not runtime.is_hopper(jax.devices()[0]),
                    reason="runs the Hopper kernel: needs an H100/H200 (checked on the device machine)")
def test_hopper_attention_matches_xla_on_hopper():
    rng = np.random.default_rng(3)
    for s, t in ((300, 200), (1000, 1000), (64, 17)):
        q, k, v = (rng.standard_normal((2, n, 3, 64)).astype(np.float32) for n in (s, t, t))
        want = lnn.dot_product_attention(q, k, v, implementation="xla")
        half = [jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)]
        out = lnn.dot_product_attention(*half, implementation="mosaic").astype(jnp.float32)
        cudnn = lnn.dot_product_attention(*half, implementation="cudnn").astype(jnp.float32) if t % 8 == 0 else want
        err, err_cudnn = (float(jnp.abs(a - want).max()) for a in (out, cudnn))
        assert err < 3e-2 and (t % 8 or err <= 1.5 * err_cudnn), (s, t, err, err_cudnn)


def test_hopper_attention_rejects_bad_inputs():
    from landiff_jax.kernels import hopper_attention

    q = jnp.zeros((1, 64, 2, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        hopper_attention(q.astype(jnp.float32), q, q)
    for d in (32, 128):  # only the head dim it was tuned and tested at
        half = jnp.zeros((1, 64, 2, d), jnp.bfloat16)
        with pytest.raises(ValueError, match="head dim must be one of \\(64,\\)"):
            hopper_attention(half, half, half)
    with pytest.raises(ValueError, match="like q"):
        hopper_attention(q, q[:, :, :1], q)
    with pytest.raises(ValueError, match="no mask"):
        lnn.dot_product_attention(q, q, q, mask=np.ones((1, 1, 64, 64), bool), implementation="mosaic")
    with pytest.raises(ValueError, match="must be one of"):
        lnn.dot_product_attention(q, q, q, implementation="flash")


def _init_apply(module, x):
    params = module.init(jax.random.key(0), x)
    return params, module.apply(params, x)


def test_rmsnorm_and_layernorm_formulas():
    x = np.random.default_rng(1).standard_normal((3, 7)).astype(np.float32) * 3 + 1
    _, y = _init_apply(lnn.RMSNorm(eps=1e-5), x)
    np.testing.assert_allclose(y, x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5), rtol=1e-5)
    _, y = _init_apply(lnn.LayerNorm(eps=1e-6), x)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_gated_mlp_formula():
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    params, y = _init_apply(lnn.GatedMlp(hidden=6), x)
    p = jax.tree.map(np.asarray, jax.tree.map(lambda b: getattr(b, "value", b), params["params"],
                                              is_leaf=lambda b: hasattr(b, "value")))
    ref = (gelu_tanh(x @ p["gate"]["kernel"]) * (x @ p["up"]["kernel"])) @ p["down"]["kernel"]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_timestep_embedding_is_cos_then_sin():
    t = np.array([0.0, 3.0, 999.0])
    emb = np.asarray(lnn.timestep_embedding(t, 8))
    freqs = np.exp(-math.log(10000) * np.arange(4) / 4)
    np.testing.assert_allclose(emb, np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], -1), rtol=1e-5, atol=1e-6)
    assert lnn.timestep_embedding(t, 7).shape == (3, 7)


def test_apply_rope_rotates_interleaved_pairs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 2, 6)).astype(np.float32)
    angles = rng.standard_normal((4, 3)).astype(np.float32)
    out = np.asarray(lnn.apply_rope(x, angles))
    xc = x[..., 0::2] + 1j * x[..., 1::2]
    rc = xc * np.exp(1j * angles)[None, :, None, :]
    np.testing.assert_allclose(out[..., 0::2], rc.real, atol=1e-5)
    np.testing.assert_allclose(out[..., 1::2], rc.imag, atol=1e-5)


def _as_cis(angles):
    return np.stack([np.cos(angles), np.sin(angles)], -1)


def test_rope_1d_matches_original_table(fixtures_dir):
    """The LM case stores the original's complex 1D table for positions 0..S-1."""
    case = fixtures_dir / "lm" / "one_group_cfg6p5"
    table = np.load(case / "io.npz")["rope_freqs_cis"]  # [S, d/2, 2]
    s, half = table.shape[:2]
    ours = _as_cis(np.asarray(lnn.rope_1d_angles(np.arange(s), 2 * half, 10000.0)))
    np.testing.assert_allclose(ours, table, atol=2e-6)


@pytest.mark.parametrize("case", ["full_group_b2", "partial_group_t2"])
def test_rope_3d_matches_original_table(fixtures_dir, case):
    z = np.load(fixtures_dir / "tokenizer" / case / "io.npz")
    table, index = z["rope_freqs_cis"], z["rope_index"]  # [S, d/2, 2], [S, 3]
    angles = lnn.rope_3d_angles(index[:, 0], index[:, 1], index[:, 2], 2 * table.shape[1])
    np.testing.assert_allclose(_as_cis(np.asarray(angles)), table, atol=2e-6)
