"""Attention at any size: the blockwise XLA attention equals plain attention (values and
gradients, every mask form the models use, ragged lengths); the dispatcher switches to it for
long sequences and never builds the score matrix then; jax's Pallas TPU flash attention (run by
the Pallas TPU interpreter on CPU) equals the XLA path and lowers for TPU from this machine."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import nn as lnn
from landiff_jax.export import largest_tensor
from landiff_jax.nn.attention import PLAIN_MAX_SCORES
from landiff_jax.nn.blockwise_attention import blockwise_attention

B, S, T, H, D = 2, 37, 29, 4, 8  # lengths that the blocks below do not divide


def _inputs(s=S, t=T, heads=H, kv_heads=H, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, s, heads, D)).astype(np.float32)
    k, v = (rng.standard_normal((B, t, kv_heads, D)).astype(np.float32) for _ in range(2))
    return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)


def _masks(s=S, t=T):
    rng = np.random.default_rng(1)
    full = rng.random((B, 1, s, t)) > 0.3
    full[0, 0, 3] = False  # a query with no allowed key: both average all keys alike
    padding = np.arange(t)[None, None, None, :] < np.array([t, t - 9])[:, None, None, None]  # [b 1 1 t]
    return {"none (DiT)": {}, "causal (LM training)": {"is_causal": True}, "full mask + causal": {"mask": full,
            "is_causal": True}, "bias + padding (T5)": {"mask": padding,
                                                        "bias": rng.standard_normal((1, H, s, t)).astype(np.float32)}}


@pytest.mark.parametrize("form", list(_masks()))
def test_blockwise_equals_plain_attention_values_and_gradients(form):
    q, k, v = _inputs()
    kw = _masks()[form]
    bias = kw.pop("bias", None)
    ct = jnp.asarray(np.random.default_rng(2).standard_normal(q.shape).astype(np.float32))

    def plain(q, k, v, bias):
        return jax.nn.dot_product_attention(q, k, v, bias=bias, implementation="xla", **kw)

    def blockwise(q, k, v, bias):
        return blockwise_attention(q, k, v, bias=bias, block_q=8, block_k=7, **kw)  # 5 chunks × 5 blocks, ragged

    def value_and_grads(fn):
        out, vjp = jax.vjp(fn, q, k, v, bias)
        return out, vjp(ct)

    (want, grads_want), (got, grads_got) = (jax.jit(value_and_grads, static_argnums=0)(fn) for fn in (plain, blockwise))
    np.testing.assert_allclose(got, want, atol=2e-6)
    for name, g, w in zip("qkvb", grads_got, grads_want):
        if w is not None:
            np.testing.assert_allclose(g, w, atol=5e-6, err_msg=f"d{name}")


def test_blockwise_grouped_heads_and_bf16():
    """Fewer key/value heads than query heads (query head n reads key head n // 2), and bf16
    inputs within bf16 rounding of float32 attention."""
    q, k, v = _inputs(kv_heads=2)
    want = jax.nn.dot_product_attention(q, k, v, implementation="xla")
    both = jax.jit(lambda *a: (blockwise_attention(*a, block_q=16, block_k=16),
                               blockwise_attention(*(x.astype(jnp.bfloat16) for x in a), block_q=16, block_k=16)))
    got, half = both(q, k, v)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(half.astype(jnp.float32), want, atol=3e-2)


def test_blockwise_rejects_bad_shapes():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match="h' dividing"):
        blockwise_attention(q, k[:, :, :3], v[:, :, :3])
    with pytest.raises(ValueError, match="does not broadcast"):
        blockwise_attention(q, k, v, mask=np.ones((B, 1, S, T + 1), bool))


def _lowered_text(fn, *shapes, platform="cpu"):
    return jax.jit(fn).trace(*shapes).lower(lowering_platforms=(platform,)).as_text()


def test_long_sequences_never_build_the_score_matrix():
    """Above PLAIN_MAX_SCORES entries 'xla' lowers to the blockwise attention: neither its forward
    nor its backward holds a tensor near [b h s t] (the largest is of the inputs' order)."""
    b, s, h, d = 1, 4100, 8, 64
    assert b * h * s * s > PLAIN_MAX_SCORES
    x = jax.ShapeDtypeStruct((b, s, h, d), jnp.bfloat16)

    def train(q, k, v):
        return jax.grad(lambda *a: lnn.dot_product_attention(*a, is_causal=True).astype(jnp.float32).sum(),
                        (0, 1, 2))(q, k, v)

    scores = b * h * s * s * 4
    for fn in (lambda q, k, v: lnn.dot_product_attention(q, k, v), train):
        size, shape = largest_tensor(_lowered_text(fn, x, x, x))
        assert size < scores / 16, (size, shape)
    small = jax.ShapeDtypeStruct((1, 256, 2, 64), jnp.float32)  # below the limit: XLA's own attention
    assert largest_tensor(_lowered_text(lambda q, k, v: lnn.dot_product_attention(q, k, v), small, small, small))[0] \
        == 2 * 256 * 256 * 4



def test_a_mask_is_not_stacked_per_batch_and_head_under_a_layer_scan():
    """A mask shared by scanned layers (the tokenizer's frame-group masks) stays of the mask's
    size when the layers are differentiated: JAX once hoisted its per-block broadcast out of the
    layer loop, one copy per (query chunk, key block, batch row, head): 14 GB per example for the
    13-frame tokenizer."""
    b, s, h, d = 4, 1024, 8, 32
    x = jax.ShapeDtypeStruct((b, s, h, d), jnp.bfloat16)
    w = jax.ShapeDtypeStruct((2,), jnp.bfloat16)

    def grads(q, w):
        i = jnp.arange(s)
        mask = (i[:, None] // 300 >= i[None, :] // 300)[None, None]  # [1 1 s s], like the tokenizer's

        def layer(x, w_l):
            return x + w_l * blockwise_attention(x, x, x, mask=mask, block_q=256, block_k=256), None

        return jax.grad(lambda q, w: jax.lax.scan(layer, q, w)[0].astype(jnp.float32).sum(), (0, 1))(q, w)

    size, shape = largest_tensor(_lowered_text(grads, x, w))
    assert size <= max(b * s * h * d * 4, b * h * 256 * 256 * 4, s * s), (size, shape)  # inputs, a score block

# ---- jax's Pallas TPU flash attention -----------------------------------------------------

def _interpret():
    from jax.experimental.pallas import tpu as pltpu

    if not hasattr(pltpu, "force_tpu_interpret_mode"):
        pytest.fail("this jax has no pltpu.force_tpu_interpret_mode: the TPU kernel cannot be checked on CPU")
    return pltpu.force_tpu_interpret_mode()


def test_tpu_flash_attention_matches_xla_in_interpret_mode():
    """Ragged lengths (padded to the kernel's 128-row blocks, padded keys behind segment ids) and
    causal, bf16 and float32, through the dispatcher as the models call it."""
    rng = np.random.default_rng(4)
    for (s, t), causal, dtype in (((130, 100), False, jnp.float32), ((140, 140), True, jnp.bfloat16)):
        q, k, v = (jnp.asarray(rng.standard_normal((1, n, 1, 64)), dtype) for n in (s, t, t))
        want = lnn.dot_product_attention(*(x.astype(jnp.float32) for x in (q, k, v)), is_causal=causal)
        with _interpret():
            got = jax.jit(lambda *a, c=causal: lnn.dot_product_attention(*a, is_causal=c, implementation="tpu_flash")
                          )(q, k, v)
        assert got.dtype == dtype and got.shape == q.shape
        np.testing.assert_allclose(got.astype(jnp.float32), want, atol=2e-5 if dtype == jnp.float32 else 3e-2)


@pytest.mark.slow
def test_tpu_flash_attention_gradients_match_xla_in_interpret_mode():
    """The kernel's backward (dq and dk/dv kernels) on a ragged causal case."""
    rng = np.random.default_rng(5)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 150, 2, 64)), jnp.float32) for _ in range(3))
    ct = jnp.asarray(rng.standard_normal(q.shape), jnp.float32)

    def grads(impl):
        return jax.grad(lambda *a: (lnn.dot_product_attention(*a, is_causal=True, implementation=impl) * ct).sum(),
                        (0, 1, 2))(q, k, v)

    want = grads("xla")
    with _interpret():
        got = jax.jit(lambda: grads("tpu_flash"))()
    for name, g, w in zip("qkv", got, want):
        np.testing.assert_allclose(g, w, atol=5e-5, err_msg=f"d{name}")


def test_tpu_flash_lowers_for_tpu_and_falls_back_to_xla_with_a_mask():
    """From a CPU-only install: unmasked attention lowers to the Mosaic TPU kernel; masked or
    biased calls go to XLA (no kernel), as the LM's decode path does on TPU."""
    x = jax.ShapeDtypeStruct((1, 300, 2, 64), jnp.bfloat16)
    mask = jax.ShapeDtypeStruct((1, 1, 300, 300), jnp.bool_)
    text = _lowered_text(lambda q, k, v: lnn.dot_product_attention(q, k, v, implementation="tpu_flash"),
                         x, x, x, platform="tpu")
    assert "tpu_custom_call" in text
    masked = _lowered_text(lambda q, k, v, m: lnn.dot_product_attention(q, k, v, mask=m, implementation="tpu_flash"),
                           x, x, x, mask, platform="tpu")
    assert "tpu_custom_call" not in masked
    q, cache = jax.ShapeDtypeStruct((2, 2, 64), jnp.bfloat16), jax.ShapeDtypeStruct((2, 2, 128, 64), jnp.bfloat16)
    start, length = jax.ShapeDtypeStruct((2,), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32)
    decode = _lowered_text(lambda *a: lnn.decode_attention(*a, implementation="xla"), q, cache, cache, start, length,
                           platform="tpu")
    assert "custom_call" not in decode
