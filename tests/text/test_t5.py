"""T5Encoder equivalences: scanned = unscanned loop, = HF's torch T5EncoderModel (random
config with num_heads·d_kv ≠ d_model), buckets = HF's, and the dispatcher's additive bias."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax.nn import RMSNorm, dot_product_attention
from landiff_jax.text.config import T5Config
from landiff_jax.text.convert import convert_params
from landiff_jax.text.encoders import encode_ids
from landiff_jax.text.original import t5_config
from landiff_jax.text.t5 import (
    T5Block,
    T5Encoder,
    position_bias,
    relative_position_buckets,
)

CFG = T5Config.tiny(d_model=24, d_kv=12, num_heads=3, d_ff=40, num_layers=3,
                    relative_attention_num_buckets=16, relative_attention_max_distance=20)
LENGTH = 40


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(1)
    ids = rng.integers(2, CFG.vocab_size, (2, LENGTH)).astype(np.int32)
    mask = np.ones((2, LENGTH), np.int32)
    mask[1, :13] = 0  # left padding
    ids[1, :13] = 0
    return ids, mask


@pytest.fixture(scope="module")
def params():
    p = jax.jit(T5Encoder(CFG).init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    return nn.meta.unbox(p)


def test_scanned_equals_layer_loop(params, inputs):
    ids, mask = inputs
    scanned = encode_ids(params, CFG, ids, mask)
    x = jnp.take(params["token_embedding"]["embedding"], ids, axis=0)
    bias = position_bias(params["relative_attention_bias"], LENGTH, LENGTH, CFG)
    attend = jnp.asarray(mask, bool)[:, None, None, :]
    for i in range(CFG.num_layers):
        layer = jax.tree.map(lambda a, i=i: a[i], params["layers"])
        x, _ = T5Block(CFG).apply({"params": layer}, x, bias, attend)
    looped = RMSNorm(CFG.layer_norm_epsilon).apply({"params": params["final_norm"]}, x)
    np.testing.assert_allclose(scanned, looped, atol=1e-5, rtol=1e-5)


def test_matches_hf_torch_model(inputs, torch):
    import transformers

    hf_cfg = dict(vocab_size=CFG.vocab_size, d_model=CFG.d_model, d_kv=CFG.d_kv, num_heads=CFG.num_heads,
                  d_ff=CFG.d_ff, num_layers=CFG.num_layers, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                  relative_attention_num_buckets=CFG.relative_attention_num_buckets,
                  relative_attention_max_distance=CFG.relative_attention_max_distance, layer_norm_epsilon=1e-6)
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(transformers.T5Config(**hf_cfg)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:  # not all ones, so that they matter
                p.copy_(1 + 0.2 * torch.randn_like(p))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    assert t5_config(model.config.to_dict()) == CFG
    params, _ = convert_params(state, CFG)
    ids, mask = inputs
    for attention_mask in (mask, None):
        with torch.no_grad():
            want = model(
                input_ids=torch.from_numpy(ids.astype(np.int64)),
                attention_mask=None if attention_mask is None else torch.from_numpy(attention_mask.astype(np.int64)),
            ).last_hidden_state.numpy()
        got = np.asarray(encode_ids(params, CFG, ids, attention_mask))
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("num_buckets,max_distance,length", [(32, 128, 600), (16, 20, 50), (8, 64, 130)])
def test_buckets_match_hf(num_buckets, max_distance, length, torch):
    from transformers.models.t5 import modeling_t5 as t5

    pos = torch.arange(length)
    want = t5.T5Attention._relative_position_bucket(
        pos[None, :] - pos[:, None], bidirectional=True, num_buckets=num_buckets, max_distance=max_distance
    ).numpy()
    np.testing.assert_array_equal(relative_position_buckets(length, length, num_buckets, max_distance), want)


def test_dispatcher_additive_bias():
    k1, k2, k3, k4 = jax.random.split(jax.random.key(3), 4)
    q, k, v = (jax.random.normal(key, (2, 5, 3, 4)) for key in (k1, k2, k3))
    bias = jax.random.normal(k4, (1, 3, 5, 5))
    mask = jnp.arange(5)[None, None, None, :] >= jnp.array([0, 2])[:, None, None, None]
    logits = jnp.einsum("bshd,bthd->bhst", q, k) + bias
    probs = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
    want = jnp.einsum("bhst,bthd->bshd", probs, v)
    got = dot_product_attention(q, k, v, bias=bias, mask=mask, scale=1.0)
    np.testing.assert_allclose(got, want, atol=1e-5)
