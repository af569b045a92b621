"""The semantic LM: a GPT of LLaMA blocks over codes and special tokens, conditioned by a
prefix of micro-conditions and T5 text features.

Every transformer call goes through one explicit KV cache: per layer `(k, v)`, each
[rows, heads, cache_len, head_dim] (heads before slots, so that one head's keys are a
contiguous [slots, head_dim] matrix), written at slot `index` and attended up to the query's
own slot; cache_len is rounded up to a multiple of the decode kernel's block. A one-token call
attends through `decode_attention` (on GPU a kernel that reads only the filled slots), a
longer one through masked XLA attention. One block function serves three paths:
- `SemanticLM.forward` with a cache (prefill of the whole prefix) scans the layers over a
  stacked cache [layers, rows, heads, cache_len, head_dim];
- `SemanticLM.forward` without a cache (cache=None: the full-sequence forward of training
  and `__call__`) allocates no cache and attends from q, k, v directly with plain causal
  attention (`cfg.train_attention`: XLA, or cuDNN's flash attention on GPU). Its rows are
  rolled to *right* padding first (row r's slot t holds its left-padded slot t + pad_r, mod
  the width), so that a row's positions are 0.. and causality alone keeps its pads out of its
  real positions: no mask or bias at all. The outputs are rolled back; only the pad
  positions' values (which attend to real keys there) differ from the cached path's;
- `decode` (one token per row) unrolls the layers over a tuple of per-layer caches and a
  tuple of per-layer parameters (`layer_params`, sliced once before the sampler's loop), so
  that inside the loop each layer's cache is a loop-carried buffer updated in place and each
  weight is read where it lies (no per-step copy of the stacked cache or of a layer's weights).
Keys and values stay two arrays: one [2, ...] array per layer (one cache update instead of
two) measured 15% slower per decode step on an H100.

Rows of one batch share slot numbers; a row whose prompt is shorter is *left-padded*: its
`pad` first slots are masked out as keys and its RoPE positions are `slot - pad`, so a row
computes what it would compute alone.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from landiff_jax.kernels import DECODE_BLOCK
from landiff_jax.lm.config import ATTENTION_SAVING_POLICIES, LMConfig
from landiff_jax.lm.layout import BOS, Vocab
from landiff_jax.nn import (
    GatedMlp,
    LayerNorm,
    Mlp,
    RMSNorm,
    apply_rope,
    decode_attention,
    dense,
    dot_product_attention,
    rope_1d_angles,
    scan_layers,
    timestep_embedding,
)
from landiff_jax.nn.mlp import gelu_tanh

ATTENTION_OUTPUT = "attention"  # checkpoint name of a block's uncached attention output [b s h k]


def _partitioned(init, axes):
    return nn.with_logical_partitioning(init, axes)


class TextCond(nn.Module):
    """T5 features -> MLP (fc1 -> GELU(tanh) -> fc2) rows; the null embedding for unconditional rows."""

    cfg: LMConfig

    @nn.compact
    def __call__(self, text_hidden):
        """text_hidden [b n t] -> (cond [b n d], null [d])."""
        cfg = self.cfg
        null = self.param("null_text_embedding", _partitioned(nn.initializers.normal(cfg.hidden**-0.5), ("embed",)),
                          (cfg.hidden,), cfg.param_dtype)
        mlp = Mlp(cfg.hidden, cfg.hidden, act=gelu_tanh, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name="mlp")
        return mlp(text_hidden.astype(cfg.dtype)), null.astype(cfg.dtype)


class MicroConditioner(nn.Module):
    """One prefix row per micro-condition key (sorted): sincos -> Linear -> SiLU -> Linear.

    A key with a drop probability > 0 has a learned null frequency embedding `null_<key>`
    [freq] (the original's `null_cond_embeddings[key]`) that replaces its sincos embedding,
    BEFORE the key's MLP, in the rows whose `keep` is False.
    """

    cfg: LMConfig

    @nn.compact
    def __call__(self, values, keep=None):
        """values [b m] in `cfg.micro_keys` order, keep [b m] bool or None -> [b m d]."""
        cfg = self.cfg
        rows = []
        for i, key in enumerate(cfg.micro_keys):
            emb = timestep_embedding(values[:, i], cfg.micro_freq_dim)
            if cfg.micro_drop_prob(key) > 0:
                null = self.param(f"null_{key}", _partitioned(nn.initializers.normal(cfg.micro_freq_dim**-0.5), (None,)),
                                  (cfg.micro_freq_dim,), cfg.param_dtype)
                if keep is not None:
                    emb = jnp.where(keep[:, i, None], emb, null.astype(emb.dtype))
            mlp = Mlp(cfg.micro_hidden, cfg.hidden, act=nn.silu, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name=key)
            rows.append(mlp(emb.astype(cfg.dtype)))
        return jnp.stack(rows, axis=1)


class LlamaBlock(nn.Module):
    """x + wo(attn(rope(wqkv(norm0 x)))), then + w2(gelu(w1 ·) · w3 ·) of norm1; the layer's
    cache gets this call's keys/values at slot `index`."""

    cfg: LMConfig

    @nn.compact
    def __call__(self, x, cache, angles, mask, index, pads):
        # x [b s d]; cache (k, v) each [b h T k], or None (causal attention over x's own keys,
        # right-padded rows); angles [b s k/2] or [s k/2]; mask [b 1 s T] (unused when s = 1
        # or without a cache); pads [b]
        cfg = self.cfg
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        init = nn.initializers.lecun_normal()
        h = RMSNorm(cfg.norm_eps, name="norm0", **kw)(x)
        qkv = nn.DenseGeneral((3, cfg.num_heads, cfg.head_dim), use_bias=False, name="wqkv",
                              kernel_init=_partitioned(init, ("embed", None, "heads", "kv")), **kw)(h)
        q, k, v = apply_rope(qkv[:, :, 0], angles), apply_rope(qkv[:, :, 1], angles), qkv[:, :, 2]
        if cache is None:
            attn = dot_product_attention(q, k, v, is_causal=True, implementation=cfg.train_attention)
            attn = checkpoint_name(attn, ATTENTION_OUTPUT)
        else:
            cache_k, cache_v = cache
            at = (0, 0, index, 0)
            cache_k = jax.lax.dynamic_update_slice(cache_k, jnp.swapaxes(k, 1, 2).astype(cache_k.dtype), at)
            cache_v = jax.lax.dynamic_update_slice(cache_v, jnp.swapaxes(v, 1, 2).astype(cache_v.dtype), at)
            cache = (cache_k, cache_v)
            if x.shape[1] == 1:  # a decode step: the row's filled slots pad..index
                attn = decode_attention(q[:, 0], cache_k, cache_v, pads, index + 1,
                                        implementation=cfg.decode_attention)[:, None]
            else:
                keys, values = (jnp.swapaxes(c, 1, 2).astype(q.dtype) for c in (cache_k, cache_v))
                attn = dot_product_attention(q, keys, values, mask=mask, implementation="xla")
        x = x + nn.DenseGeneral(cfg.hidden, axis=(-2, -1), use_bias=False, name="wo",
                                kernel_init=_partitioned(init, ("heads", "kv", "embed")), **kw)(attn)
        mlp = GatedMlp(cfg.mlp_dim, act=gelu_tanh, use_bias=False, name="mlp", **kw)
        x = x + mlp(RMSNorm(cfg.norm_eps, name="norm1", **kw)(x))
        return x, cache


def _cudnn_attention_forward(prim, *_, **__) -> bool:
    """Remat policy: keep the outputs of cuDNN's fused attention forward (its output and softmax
    statistics, the residuals of its backward). Naming the attention output is not enough: the
    statistics would be recomputed by running the whole forward again."""
    return prim.name.startswith("dot_product_attention_fwd")


def remat_policy(name: str):
    """The `jax.checkpoint` policy of an LMConfig.remat name other than "none" (None: "full").
    "<dots policy>+attention" also keeps each block's attention (XLA: its named output; cuDNN:
    the fused forward's outputs), so the backward never reruns it."""
    if name == "full":
        return None
    if name in ATTENTION_SAVING_POLICIES:
        both = jax.checkpoint_policies.save_from_both_policies
        attention = both(jax.checkpoint_policies.save_only_these_names(ATTENTION_OUTPUT), _cudnn_attention_forward)
        return both(getattr(jax.checkpoint_policies, name.removesuffix("+attention")), attention)
    return getattr(jax.checkpoint_policies, name)


def remat_block(cfg: LMConfig):
    """LlamaBlock wrapped in `nn.remat` with cfg.remat's policy ("none": as is). Remat only
    changes what differentiation keeps, so the scanned forward computes the same values."""
    if cfg.remat == "none":
        return LlamaBlock
    return nn.remat(LlamaBlock, policy=remat_policy(cfg.remat), prevent_cse=False)


def init_cache(cfg: LMConfig, rows: int, length: int):
    """An empty stacked KV cache for at least `length` slots: (k, v), each [layers, rows, heads,
    T, head_dim] in cfg.dtype, T = length rounded up to a multiple of the decode kernel's block."""
    slots = -(-length // DECODE_BLOCK) * DECODE_BLOCK
    shape = (cfg.num_layers, rows, cfg.num_heads, slots, cfg.head_dim)
    return jnp.zeros(shape, cfg.dtype), jnp.zeros(shape, cfg.dtype)


def split_cache(cache):
    """Stacked (k, v) [layers, ...] -> the tuple of per-layer (k, v) that `decode` carries."""
    cache_k, cache_v = cache
    return tuple((cache_k[i], cache_v[i]) for i in range(cache_k.shape[0]))


def attention_inputs(cfg: LMConfig, index, length: int, pads, cache_len: int):
    """RoPE angles [b s k/2] and mask [b 1 s T] for `length` queries written from slot `index`."""
    slots = index + jnp.arange(length)
    angles = rope_1d_angles(slots[None, :] - pads[:, None], cfg.head_dim, cfg.rope_theta)
    keys = jnp.arange(cache_len)
    mask = (keys[None, None, :] <= slots[None, :, None]) & (keys[None, None, :] >= pads[:, None, None])
    return angles, mask[:, None]


class SemanticLM(nn.Module):
    cfg: LMConfig

    def setup(self):
        cfg = self.cfg
        self.token_embed = nn.Embed(cfg.vocab_size, cfg.hidden, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                                    embedding_init=_partitioned(nn.initializers.normal(0.02), ("vocab", "embed")))
        self.text_cond = TextCond(cfg)
        self.micro_cond = MicroConditioner(cfg)
        self.blocks = scan_layers(remat_block(cfg), cfg.num_layers,
                                  in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
                                  cfg=cfg)  # params under "layers"
        self.final_norm = LayerNorm(cfg.final_norm_eps, param_dtype=cfg.param_dtype)
        # logits in float32, as the original (its head runs on x.float())
        self.head = dense(cfg.vocab_size, ("embed", "vocab"), use_bias=False, param_dtype=cfg.param_dtype)

    def embed(self, tokens):
        return self.token_embed(tokens)

    def prefix(self, text_hidden, text_mask, micro, video_tokens, guidance: bool, text_keep=None, micro_keep=None):
        """Features of the prefix [BOS][micro × m][text × n][video_tokens], left-padded.

        text_hidden [b n t], text_mask [b n] (left padding), micro [b m], video_tokens [b v]
        (START_OF_IFrame, plus a ground-truth first frame if given; in training the whole
        video part). With guidance the unconditional rows (null text embedding, same pads)
        follow the conditional ones. Training's condition drops: text_keep [b] (False: every
        text row is the null text embedding, which is already in hidden space) and micro_keep
        [b m] (see MicroConditioner). Returns (features [r p d], pads [r]) with r = 2b or b
        and p = 1 + m + n + v.
        """
        b, n = text_mask.shape
        cond, null = self.text_cond(text_hidden)
        if text_keep is not None:
            cond = jnp.where(text_keep[:, None, None], cond, null)
        bos = jnp.broadcast_to(self.embed(jnp.asarray(Vocab(self.cfg.codebook_size)[BOS])), (b, 1, self.cfg.hidden))
        head = jnp.concatenate([bos, self.micro_cond(micro, micro_keep)], axis=1)
        tail = self.embed(video_tokens)
        texts = [cond, jnp.broadcast_to(null, cond.shape)] if guidance else [cond]
        rows = jnp.concatenate([jnp.concatenate([head, t, tail], axis=1) for t in texts], axis=0)
        pads = jnp.tile(n - jnp.sum(text_mask, axis=1, dtype=jnp.int32), len(texts))
        # move each row's padding text rows in front of BOS: slot t reads source row src[t]
        m1, slot = head.shape[1], jnp.arange(rows.shape[1])[None, :]
        src = jnp.where(slot < pads[:, None], slot + m1, jnp.where(slot < pads[:, None] + m1, slot - pads[:, None], slot))
        return jnp.take_along_axis(rows, src[:, :, None], axis=1), pads

    def logits(self, x):
        """Final norm and head: x [... d] -> float32 logits [... V] (the original's head runs on x.float())."""
        return self.head(self.final_norm(x).astype(jnp.float32))

    def forward(self, x, cache, index, pads, last_only: bool = True):
        """x [r s d] written at slots index..index+s-1 of the stacked cache -> (float32 logits
        [r V] of the last query (or [r s V]), updated stacked cache).

        cache None: the uncached full-sequence forward (index must be 0; returns cache None):
        rows rolled to right padding, plain causal attention, rolled back (module docstring).
        """
        x = x.astype(self.cfg.dtype)
        if cache is not None:
            angles, mask = attention_inputs(self.cfg, index, x.shape[1], pads, cache[0].shape[3])
            x, cache = self.blocks(x, cache, angles, mask, index, pads)
            return self.logits(x[:, -1] if last_only else x), cache
        if not isinstance(index, int) or index != 0:
            raise ValueError(f"the uncached forward starts at slot 0, got index {index!r}")
        s = x.shape[1]
        slots = jnp.arange(s)
        right = (slots[None, :] + pads[:, None]) % s  # [r s]: right-padded slot t reads slot t + pad
        x = jnp.take_along_axis(x, right[:, :, None], axis=1)
        # jax's cuDNN attention trains only even lengths: one more slot, after every real one
        extra = s % 2
        x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
        angles = rope_1d_angles(jnp.arange(s + extra), self.cfg.head_dim, self.cfg.rope_theta)  # positions 0..
        x, _ = self.blocks(x, None, angles, None, 0, pads)
        x = x[:, :s]
        if last_only:  # a row's last slot is its right-padded slot s - 1 - pad
            return self.logits(jnp.take_along_axis(x, (s - 1 - pads)[:, None, None], axis=1)[:, 0]), None
        left = (slots[None, :] - pads[:, None]) % s
        return self.logits(jnp.take_along_axis(x, left[:, :, None], axis=1)), None

    def __call__(self, text_hidden, text_mask, micro, tokens, guidance: bool = False):
        """Uncached full forward: logits [r, prefix + s, V] of the prefix (ending with
        START_OF_IFrame) followed by `tokens` [b s]."""
        soi = jnp.full((text_mask.shape[0], 1), self.cfg.codebook_size + 2, jnp.int32)
        x, pads = self.prefix(text_hidden, text_mask, micro, soi, guidance)
        steps = jnp.tile(self.embed(tokens), (x.shape[0] // tokens.shape[0], 1, 1))
        x = jnp.concatenate([x, steps], axis=1)
        logits, _ = self.forward(x, None, 0, pads, last_only=False)
        return logits


def layer_params(params):
    """The stacked block parameters as a tuple of per-layer trees, materialised once.

    Slicing `p[i]` inside a loop body makes XLA copy every layer's weights out of the stack at
    every step (3x the weight traffic); sliced before the loop, behind an optimization barrier
    that keeps the slices from being sunk back into the body, each step reads them in place.
    """
    stacked = params["layers"]
    num_layers = jax.tree.leaves(stacked)[0].shape[0]
    return jax.lax.optimization_barrier(tuple(jax.tree.map(lambda p: p[i], stacked) for i in range(num_layers)))


def decode(cfg: LMConfig, params, layers, tokens, caches, index, pads):
    """One cached step: tokens [r] written at slot `index` -> (float32 logits [r V], caches).

    layers: `layer_params(params)`; caches: the tuple of per-layer (k, v) of `split_cache`.
    The layers are unrolled, each running the same `LlamaBlock` on its own parameters and its
    own cache buffer, so a loop carrying `caches` updates them in place.
    """
    model, block = SemanticLM(cfg), LlamaBlock(cfg)
    x = model.apply({"params": params}, tokens[:, None], method=SemanticLM.embed).astype(cfg.dtype)
    angles, _ = attention_inputs(cfg, index, 1, pads, caches[0][0].shape[2])
    updated = []
    for layer, cache in zip(layers, caches, strict=True):
        x, cache = block.apply({"params": layer}, x, cache, angles, None, index, pads)
        updated.append(cache)
    return model.apply({"params": params}, x[:, -1], method=SemanticLM.logits), tuple(updated)


def init_params(cfg: LMConfig, rng):
    """Random parameters (plain pytree) of a model of cfg, built where jit places them."""
    def init(key):
        n, m = 2, len(cfg.micro_keys)
        args = (jnp.zeros((1, n, cfg.text_dim), cfg.dtype), jnp.ones((1, n), bool), jnp.zeros((1, m)),
                jnp.zeros((1, 1), jnp.int32))
        return nn.meta.unbox(SemanticLM(cfg).init(key, *args)["params"])

    return jax.jit(init)(rng)


def abstract_params(cfg: LMConfig):
    """jax.eval_shape of init (boxed: carries the logical axis names)."""
    n, m = 2, len(cfg.micro_keys)
    args = (jax.ShapeDtypeStruct((1, n, cfg.text_dim), cfg.dtype), jax.ShapeDtypeStruct((1, n), bool),
            jax.ShapeDtypeStruct((1, m), jnp.float32), jax.ShapeDtypeStruct((1, 1), jnp.int32))
    return jax.eval_shape(SemanticLM(cfg).init, jax.random.key(0), *args)["params"]
