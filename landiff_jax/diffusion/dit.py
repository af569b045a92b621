"""The control DiT: CogVideoX-2B (the main model) plus LanDiff's control branch.

Sequence layout (both branches): [text tokens (text_length) | video tokens (t, h, w row-major)].
Each layer is an adaLN-modulated pre-LN transformer layer whose 12 modulation vectors come in
two sets: shift/scale/gate for attention and MLP, for video tokens (first six) and text tokens
(last six). The control branch copies the first N layers; after each, a bias-free zero-init
linear projects its output, which is both the next control layer's input and what main layer i
adds to ALL its tokens (text too) after it runs. Both stacks are scanned; the main stack reads
control output i from the stacked control outputs (nothing is added past layer N). With
`control_layers == 0` the model is the base DiT alone (no control branch, no semantic feature).

With `sequence` (a `parallel.SequenceSplit`, inside `shard_map`), the same model and params run
sequence-parallel: each device embeds the whole sequence, keeps its chunk of tokens through the
layers (the attention exchanges heads for sequences, `nn.sequence_parallel_attention`; the
control outputs are chunked alike) and gathers the tokens back before the final layer.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from landiff_jax.diffusion.config import DiTConfig
from landiff_jax.diffusion.pos_embed import video_pos_embed
from landiff_jax.nn import (
    LayerNorm,
    Mlp,
    dense,
    dot_product_attention,
    scan_layers,
    sequence_parallel_attention,
    timestep_embedding,
)
from landiff_jax.nn.mlp import gelu_tanh
from landiff_jax.parallel import SequenceSplit


def _dtypes(cfg: DiTConfig) -> dict:
    return dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)


def _boxed(init, axes):
    return nn.with_logical_partitioning(init, axes)


def per_segment(text_value, video_value, is_text):
    """[b, d] per segment → [b, s, d] by is_text [s]: an elementwise select XLA fuses into its
    consumer, so no per-token modulation array is materialised."""
    return jnp.where(is_text[None, :, None], text_value[:, None, :], video_value[:, None, :])


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Full self-attention with q/k LayerNorm over the head dim; qkv as [q | k | v] thirds."""

    cfg: DiTConfig
    sequence: SequenceSplit | None = None

    @nn.compact
    def __call__(self, x):  # x: [b s d] (this device's chunk with `sequence`)
        c = self.cfg
        qkv = nn.DenseGeneral(
            (3, c.num_heads, c.head_dim), name="qkv", **_dtypes(c),
            kernel_init=_boxed(nn.initializers.lecun_normal(), ("embed", None, "heads", "kv")),
            bias_init=_boxed(nn.initializers.zeros_init(), (None, "heads", "kv")),
        )(x)  # [b s 3 n k]
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        norm = lambda name: LayerNorm(c.qk_norm_eps, axis_name="kv", name=name, **_dtypes(c))
        q, k = norm("query_norm")(q), norm("key_norm")(k)
        scale = 1.0 / math.sqrt(c.head_dim)
        if self.sequence is None:
            out = dot_product_attention(q, k, v, scale=scale, implementation=c.attention)
        else:
            out = sequence_parallel_attention(q, k, v, self.sequence, scale=scale, implementation=c.attention)
        return nn.DenseGeneral(
            c.hidden_size, axis=(-2, -1), name="dense", **_dtypes(c),
            kernel_init=_boxed(nn.initializers.lecun_normal(), ("heads", "kv", "embed")),
            bias_init=_boxed(nn.initializers.zeros_init(), ("embed",)),
        )(out)


class DiTLayer(nn.Module):
    """One adaLN transformer layer. Control layers end with their zero linear and emit it;
    main layers add control output `layer_index` (if any) and optionally emit their output."""

    cfg: DiTConfig
    is_control: bool = False
    collect: bool = False
    sequence: SequenceSplit | None = None

    @nn.compact
    def __call__(self, x, emb, *injection):  # x: [b s d] (a chunk with `sequence`), emb: [b e]
        c = self.cfg
        b, s, d = x.shape
        positions = jnp.arange(s) if self.sequence is None else self.sequence.positions()
        mod = dense(12 * d, (None, "mlp"), name="adaln", **_dtypes(c))(nn.silu(emb)).reshape(b, 12, d)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            per_segment(mod[:, 6 + j], mod[:, j], positions < c.text_length) for j in range(6)
        )
        ln = lambda name: LayerNorm(c.layernorm_eps, name=name, **_dtypes(c))
        h = modulate(ln("input_layernorm")(x), shift_msa, scale_msa)
        x = x + gate_msa * Attention(c, self.sequence, name="attention")(h)
        h = modulate(ln("post_attention_layernorm")(x), shift_mlp, scale_mlp)
        x = x + gate_mlp * Mlp(c.mlp_ratio * d, d, act=gelu_tanh, name="mlp", **_dtypes(c))(h)
        if self.is_control:
            x = dense(d, ("mlp", "embed"), use_bias=False, name="zero_linear", **_dtypes(c))(x)
            return x, x
        if not injection:  # the base DiT
            return x, (x if self.collect else None)
        controls, layer_index = injection  # [N b s d], scalar
        n = controls.shape[0]
        control = jax.lax.dynamic_index_in_dim(controls, jnp.minimum(layer_index, n - 1), keepdims=False)
        x = x + jnp.where(layer_index < n, control, jnp.zeros_like(control))
        return x, (x if self.collect else None)


class FinalLayer(nn.Module):
    """norm_final (eps 1e-6) → adaLN shift/scale → linear → unpatchify, on video tokens."""

    cfg: DiTConfig

    @nn.compact
    def __call__(self, video, emb, frames: int):  # video: [b t·h·w d] → [b t H W c]
        c = self.cfg
        b, _, d = video.shape
        shift, scale = jnp.split(dense(2 * d, (None, "mlp"), name="adaln", **_dtypes(c))(nn.silu(emb)), 2, axis=-1)
        video = modulate(LayerNorm(c.final_norm_eps, name="norm_final", **_dtypes(c))(video),
                         shift[:, None], scale[:, None])
        p = c.patch_size
        out = dense(p * p * c.out_channels, ("embed", None), name="linear", **_dtypes(c))(video)
        h, w = c.grid
        out = out.reshape(b, frames, h, w, c.out_channels, p, p)  # features ordered (c p q)
        return out.transpose(0, 1, 2, 5, 3, 6, 4).reshape(b, frames, h * p, w * p, c.out_channels)


class DiTBranch(nn.Module):
    """Time embedding, patch + text embedding, position embedding and the scanned layers.

    The main branch ends with `final_layernorm` and the final layer; the control branch returns
    its stacked per-layer (zero-linear) outputs [N b s d] (chunks [N b chunk d] with `sequence`,
    which the main branch takes as they are). With `collect`, a dict of
    intermediates (time embeddings, embedded tokens before the position embedding, per-layer
    outputs) comes back too.
    """

    cfg: DiTConfig
    is_control: bool = False
    collect: bool = False
    sequence: SequenceSplit | None = None

    @nn.compact
    def __call__(self, x, timesteps, context, controls=None):
        c = self.cfg
        b, t, height, width, ch = x.shape
        t_sin = timestep_embedding(timesteps, c.hidden_size)  # [b d] float32, [cos | sin]
        emb = Mlp(c.time_embed_dim, c.time_embed_dim, act=nn.silu, name="time_embed", **_dtypes(c))(
            t_sin.astype(c.dtype))
        p = c.patch_size
        patches = nn.Conv(
            c.hidden_size, (p, p), strides=(p, p), padding="VALID", name="patch_embed", **_dtypes(c),
            kernel_init=_boxed(nn.initializers.lecun_normal(), (None, None, "conv_in", "embed")),
            bias_init=_boxed(nn.initializers.zeros_init(), ("embed",)),
        )(x.reshape(b * t, height, width, ch).astype(c.dtype))
        tokens = patches.reshape(b, t * patches.shape[1] * patches.shape[2], c.hidden_size)
        text = dense(c.hidden_size, (None, "embed"), name="text_proj", **_dtypes(c))(context.astype(c.dtype))
        hidden = jnp.concatenate([text, tokens + video_pos_embed(c, t).astype(c.dtype)], axis=1)
        if self.sequence is not None:
            if self.collect:
                raise ValueError("collect is not supported with a sequence split")
            hidden = self.sequence.local(hidden)

        n = c.control_layers if self.is_control else c.num_layers
        layer = dict(remat=c.remat, unroll=c.scan_unroll, cfg=c, sequence=self.sequence)
        if self.is_control:
            layers = scan_layers(DiTLayer, n, in_axes=(nn.broadcast,), is_control=True, **layer)
            hidden, per_layer = layers(hidden, emb)
        elif controls is None:
            layers = scan_layers(DiTLayer, n, in_axes=(nn.broadcast,), collect=self.collect, **layer)
            hidden, per_layer = layers(hidden, emb)
        else:
            layers = scan_layers(DiTLayer, n, in_axes=(nn.broadcast, nn.broadcast, 0), collect=self.collect, **layer)
            hidden, per_layer = layers(hidden, emb, controls, jnp.arange(n))

        if self.is_control:
            result = per_layer
        else:
            if self.sequence is not None:
                hidden = self.sequence.gather(hidden)
            video = LayerNorm(c.layernorm_eps, name="final_layernorm", **_dtypes(c))(hidden[:, c.text_length:])
            result = FinalLayer(c, name="final_layer")(video, emb, t)
        if not self.collect:
            return result
        return result, dict(t_emb_sinusoidal=t_sin, time_emb=emb,
                            embed_tokens=jnp.concatenate([text, tokens], axis=1), layer_outputs=per_layer)


class ControlDiT(nn.Module):
    """ControlDiffWarp: the control branch sees x + semantic feature, the main branch x.

    x: [b t H W c] latent (channels-last), timesteps: [b] (the network's c_noise), context:
    [b text_length text_hidden] T5 states, semantic_feature: [1 or b, t, H, W, c] (None for the
    base DiT, `control_layers == 0`).
    Returns the v-prediction network output [b t H W c] (and intermediates with `collect`).
    sequence: run sequence-parallel inside `shard_map` (module docstring); the output is whole.
    """

    cfg: DiTConfig
    collect: bool = False
    sequence: SequenceSplit | None = None

    @nn.compact
    def __call__(self, x, timesteps, context, semantic_feature=None):
        check_inputs(self.cfg, x, timesteps, context, semantic_feature)
        c = self.cfg
        if c.control_layers == 0:
            main = DiTBranch(c, collect=self.collect, sequence=self.sequence, name="main")(x, timesteps, context)
            if not self.collect:
                return main
            return main[0], {f"main_{k}": v for k, v in main[1].items()}
        control_input = x.astype(c.dtype) + semantic_feature.astype(c.dtype)
        control = DiTBranch(c, is_control=True, collect=self.collect, sequence=self.sequence, name="control")(
            control_input, timesteps, context)
        controls = control[0] if self.collect else control
        main = DiTBranch(c, collect=self.collect, sequence=self.sequence, name="main")(x, timesteps, context, controls)
        if not self.collect:
            return main
        (output, main_parts), ctrl_parts = main, control[1]
        intermediates = {f"control_{k}": v for k, v in ctrl_parts.items()}
        intermediates.update({f"main_{k}": v for k, v in main_parts.items()})
        return output, intermediates


def check_inputs(cfg: DiTConfig, x, timesteps, context, semantic_feature) -> None:
    """Shape errors before compute, naming the argument."""
    if x.ndim != 5:
        raise ValueError(f"x must be [b, t, H, W, c], got shape {x.shape}")
    b, t, height, width, ch = x.shape
    want = (cfg.latent_height, cfg.latent_width, cfg.in_channels)
    if (height, width, ch) != want:
        raise ValueError(f"x has (H, W, c) = {(height, width, ch)}, the config needs {want}")
    if not 1 <= t <= cfg.latent_frames:
        raise ValueError(f"x has {t} latent frames; the position embedding covers 1..{cfg.latent_frames}")
    if timesteps.shape != (b,):
        raise ValueError(f"timesteps must be [{b}], got {timesteps.shape}")
    if context.shape != (b, cfg.text_length, cfg.text_hidden_size):
        raise ValueError(f"context must be {(b, cfg.text_length, cfg.text_hidden_size)}, got {context.shape}")
    if cfg.control_layers == 0:
        if semantic_feature is not None:
            raise ValueError("the base DiT (control_layers=0) takes no semantic_feature")
        return
    if semantic_feature is None:
        raise ValueError("semantic_feature is required by the control branch (control_layers > 0)")
    if semantic_feature.shape[1:] != x.shape[1:] or semantic_feature.shape[0] not in (1, b):
        raise ValueError(f"semantic_feature must be [1 or {b}, {t}, {height}, {width}, {ch}], "
                         f"got {semantic_feature.shape}")
