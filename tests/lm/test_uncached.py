"""The uncached full-sequence forward (training's) against the cached prefill (the sampler's):
same logits and gradients on every real position; its cuDNN attention lowers for CUDA, and the
'+attention' remat policies keep cuDNN's fused forward instead of rerunning it."""

from __future__ import annotations

import collections
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.losses import Drops, lm_loss
from landiff_jax.lm.model import SemanticLM, abstract_params, init_cache, init_params

WIDTH = 25  # odd: the uncached path pads one slot for cuDNN
PADS = np.array([0, 3, 11], np.int32)


@pytest.fixture(scope="module")
def setup():
    cfg = LMConfig.tiny()
    params = init_params(cfg, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (len(PADS), WIDTH, cfg.hidden), jnp.float32)
    weights = jax.random.normal(jax.random.key(2), (len(PADS), WIDTH, cfg.vocab_size), jnp.float32)
    real = np.arange(WIDTH)[None, :] >= PADS[:, None]  # [r s]

    def objective(params, x, cached: bool):
        cache = init_cache(cfg, x.shape[0], WIDTH) if cached else None
        logits, _ = SemanticLM(cfg).apply({"params": params}, x, cache, 0, jnp.asarray(PADS), last_only=False,
                                          method=SemanticLM.forward)
        return jnp.sum(jnp.where(real[..., None], logits * weights, 0.0)), logits

    run = jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True), static_argnums=2)
    return cfg, params, x, real, {cached: run(params, x, cached) for cached in (True, False)}


def test_uncached_logits_equal_cached_prefill(setup):
    _, _, _, real, out = setup
    (_, cached), _ = out[True]
    (_, uncached), _ = out[False]
    np.testing.assert_allclose(np.asarray(uncached)[real], np.asarray(cached)[real], atol=2e-5, rtol=1e-5)


def test_uncached_last_only_is_each_rows_last_position(setup):
    cfg, params, x, _, out = setup
    (_, full), _ = out[False]
    last, cache = SemanticLM(cfg).apply({"params": params}, x, None, 0, jnp.asarray(PADS), method=SemanticLM.forward)
    assert cache is None
    np.testing.assert_allclose(np.asarray(last), np.asarray(full)[:, -1], atol=1e-6)


def test_uncached_gradients_equal_cached_prefill(setup):
    _, _, _, real, out = setup
    _, (cached_params, cached_x) = out[True]
    _, (uncached_params, uncached_x) = out[False]
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(cached_params),
                                 jax.tree.leaves(uncached_params), strict=True):
        scale = float(np.max(np.abs(want)))  # 0 for the conditioning MLPs (x is given)
        assert scale > 0 or path[0].key not in ("layers", "head", "final_norm"), path
        np.testing.assert_allclose(got, want, atol=1e-5 * scale, rtol=1e-4, err_msg=jax.tree_util.keystr(path))
    np.testing.assert_allclose(np.asarray(uncached_x)[real], np.asarray(cached_x)[real], atol=1e-5, rtol=1e-4)
    np.testing.assert_array_equal(np.asarray(uncached_x)[~real], 0.0)  # pads feed no real position


def test_uncached_forward_offset_and_config_are_checked(setup):
    cfg, params, x, _, _ = setup
    with pytest.raises(ValueError, match="starts at slot 0"):
        SemanticLM(cfg).apply({"params": params}, x, None, 3, jnp.asarray(PADS), method=SemanticLM.forward)
    with pytest.raises(ValueError, match="train_attention"):
        LMConfig.tiny(train_attention="flash")
    with pytest.raises(ValueError, match="remat"):
        LMConfig.tiny(remat="full+attention")


def _cudnn_calls(remat: str) -> collections.Counter:
    """cuDNN custom calls of the bf16 training gradient lowered for CUDA (tiny model, odd width)."""
    cfg = LMConfig.tiny(dtype=jnp.bfloat16, train_attention="cudnn", remat=remat)
    params = nn.meta.unbox(abstract_params(cfg))  # ShapeDtypeStructs
    b, n = 2, 4
    codes = L.num_codes(3, cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length)
    batch = {"text_embedding": jax.ShapeDtypeStruct((b, n, cfg.text_dim), jnp.float32),
             "text_mask": np.array([[1, 1, 1, 1], [0, 1, 1, 1]], bool),
             "codes": jax.ShapeDtypeStruct((b, codes), jnp.int32), "frames": jax.ShapeDtypeStruct((b,), jnp.float32),
             "motion_score": jax.ShapeDtypeStruct((b,), jnp.float32)}
    grad = jax.jit(lambda p, batch: jax.grad(lambda p: lm_loss(p, cfg, batch, Drops())[0])(p))
    text = grad.trace(params, batch).lower(lowering_platforms=("cuda",)).as_text()
    return collections.Counter(re.findall(r"__cudnn\$\w+", text))


@pytest.mark.parametrize("remat, forwards", [("none", 1), ("full", 2), ("dots_with_no_batch_dims_saveable", 2),
                                             ("dots_with_no_batch_dims_saveable+attention", 1),
                                             ("nothing_saveable+attention", 1)])
def test_cudnn_training_attention_lowers_for_cuda(monkeypatch, remat, forwards):
    """jax checks the installed cuDNN while tracing (none on a CPU-only jax): pretend 9.10 so
    that the fused attention traces and lowers for a CUDA target here. The forward scan holds
    one fused forward; a backward that reruns it holds a second."""
    from jax._src.cudnn import fused_attention_stablehlo  # private: only to pretend a cuDNN version

    monkeypatch.setattr(fused_attention_stablehlo, "check_cudnn_version", lambda: 91000)
    calls = _cudnn_calls(remat)
    assert calls == {"__cudnn$fmhaSoftmax": forwards, "__cudnn$fmhaSoftmaxBackward": 1}
