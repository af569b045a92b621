"""Tokenizer equivalences: masks against a literal reading of the rules, batched vs per-sample
decode, scanned vs per-layer trunk, clip lengths, Theia's bicubic resize against PyTorch."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

from landiff_jax.tokenizer import TokenizerConfig, VideoVQ, abstract_params, api, masks
from landiff_jax.tokenizer.blocks import TransformerBlock
from landiff_jax.tokenizer.original import tokenizer_config_from_overrides
from landiff_jax.tokenizer.theia import bicubic_matrix, fit_to_grid

# 2×3 grid, I = 7 − 2·2 = 3, P = 2: small enough for the python reference masks
SMALL = TokenizerConfig.tiny(image_size=(2, 3), num_latent_tokens=7, rope_max_height=2, rope_max_width=3)


def _reference_masks(cfg: TokenizerConfig, T: int):
    """The fixture README's rules, one (q, k) pair at a time."""
    F, I, P = cfg.tokens_per_frame, cfg.iframe_tokens, cfg.pframe_tokens
    V, S = T * F, cfg.seq_len(T)
    enc, dec = np.zeros((S, S), bool), np.zeros((S, S), bool)
    for q in range(S):
        for k in range(S):
            if q < V:
                f = q // F
                enc[q, k] = k < V and k // F <= f
                dec[q, k] = (k < V and k // F <= f) or (V <= k < V + I + f * P)
            elif q < V + I:
                enc[q, k] = k < F or (V <= k <= q)
                dec[q, k] = k < F or (V <= k < V + I)
            else:
                f = (q - V - I) // P + 1
                enc[q, k] = (k < V and k // F <= f) or (V <= k <= q)
                dec[q, k] = (k < V and k // F <= f) or (V <= k < V + I + f * P)
    return enc, dec


@pytest.mark.parametrize("num_frames", [1, 2, 3, 5])
def test_masks_follow_the_rules(num_frames):
    enc, dec = _reference_masks(SMALL, num_frames)
    np.testing.assert_array_equal(masks.encoder_mask(SMALL, num_frames), enc)
    np.testing.assert_array_equal(masks.decoder_mask(SMALL, num_frames), dec)
    pos = np.asarray(masks.rope_positions(SMALL, num_frames))
    assert pos.shape == (SMALL.seq_len(num_frames), 3)
    np.testing.assert_array_equal(pos[num_frames * 6:], np.repeat(np.arange(SMALL.num_codes(num_frames)), 3).reshape(-1, 3))


def _dense(frames: masks.FrameMask, seq: int) -> np.ndarray:
    """The [S, S] mask a FrameMask stands for."""
    order = np.concatenate([np.arange(a, b) for a, b in frames.key_order])
    rows = [np.isin(np.arange(seq), order[:n])[None].repeat(frames.frame_tokens, 0) for n in frames.prefix]
    return np.concatenate([*rows, np.asarray(frames.latent_rows)])


@pytest.mark.parametrize("num_frames", [1, 2, 3, 5])
def test_frame_masks_are_the_masks(num_frames):
    """The visual rows really are key prefixes: the FrameMask form allows exactly the dense mask's
    pairs, and counts them."""
    seq = SMALL.seq_len(num_frames)
    for frames, dense in ((masks.encoder_frames, masks.encoder_mask), (masks.decoder_frames, masks.decoder_mask)):
        want = np.asarray(dense(SMALL, num_frames))
        got = frames(SMALL, num_frames)
        np.testing.assert_array_equal(_dense(got, seq), want)
        assert got.pairs() == want.sum()


def test_frame_attention_equals_masked_attention():
    """Per-frame prefix attention + masked latent rows = one attention under the dense mask, in
    value and in every input's gradient."""
    num_frames, seq = 3, SMALL.seq_len(3)
    q, k, v, cotangent = jax.random.normal(jax.random.PRNGKey(0), (4, 2, seq, 3, 8))
    for frames, dense in ((masks.encoder_frames, masks.encoder_mask), (masks.decoder_frames, masks.decoder_mask)):
        mask = dense(SMALL, num_frames)[None, None]

        def grouped(q, k, v, frames=frames(SMALL, num_frames)):
            return (masks.frame_attention(q, k, v, frames) * cotangent).sum()

        def masked(q, k, v, mask=mask):
            return (jax.nn.dot_product_attention(q, k, v, mask=mask) * cotangent).sum()

        for got, want in zip(jax.value_and_grad(grouped, (0, 1, 2))(q, k, v), jax.value_and_grad(masked, (0, 1, 2))(q, k, v)):
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_code_counts():
    full = TokenizerConfig.full()
    assert (full.iframe_tokens, full.pframe_tokens, full.grid) == (330, 74, (30, 45))
    assert full.num_codes(13) == 1218 and full.frames_for_codes(1218) == 13
    assert full.seq_len(13) == 17550 + 1218
    with pytest.raises(ValueError, match="not I"):
        full.frames_for_codes(1219)
    with pytest.raises(ValueError, match="max_time"):
        full.num_codes(101)
    with pytest.raises(ValueError, match="unknown build_tokenizer override"):
        tokenizer_config_from_overrides({"widht": 8})


@pytest.fixture(scope="module")
def tiny():
    cfg = TokenizerConfig.tiny()
    rng = np.random.default_rng(0)  # random weights without compiling model.init
    shapes = nn.meta.unbox(abstract_params(cfg))
    return cfg, jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


def test_batched_decode_equals_per_sample(tiny):
    cfg, params = tiny
    model = VideoVQ(cfg)
    codes = np.random.default_rng(1).integers(0, cfg.codebook_size, (3, cfg.num_codes(3)))
    batched = np.asarray(api.decode(params, model.config, codes))
    for b in range(3):
        # float32 rounding differs with the batch's shape (~1e-6 here); a row leaking into another is O(1)
        np.testing.assert_allclose(batched[b:b + 1], api.decode(params, model.config, codes[b:b + 1]),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_frames", [1, 5])  # 2 (partial group) is a public parity case
def test_clip_lengths(tiny, num_frames):
    """Partial groups and clips longer than temporal_size: I + (T−1)·P codes, decoded back to T frames."""
    cfg, params = tiny
    model = VideoVQ(cfg)
    features = np.random.default_rng(num_frames).standard_normal((2, num_frames, 4, 6, 16)).astype(np.float32)
    codes = api.encode(params, model.config, features)
    assert codes.shape == (2, cfg.num_codes(num_frames)) and codes.dtype == np.int32
    assert api.decode(params, model.config, codes, num_frames).shape == (2, num_frames, 4, 6, 16)
    with pytest.raises(ValueError, match="latent tokens given"):
        api.decode(params, model.config, codes, num_frames + 1)


def test_scanned_trunk_equals_layer_loop(tiny):
    cfg, params = tiny
    codes = np.random.default_rng(2).integers(0, cfg.codebook_size, (1, cfg.num_codes(3)))
    trace_decode = jax.jit(lambda p, c: VideoVQ(cfg, trace=True).apply({"params": p}, c, 3, method=VideoVQ.trace_decode))
    trace = trace_decode(params, codes)
    block = TransformerBlock(num_heads=cfg.num_heads, mlp_dim=4 * cfg.width, attn_bias=cfg.attn_bias)
    x = trace["dec_ln_pre_out"]
    angles, mask = masks.rope_angles(cfg, 3), masks.decoder_frames(cfg, 3)
    apply_block = jax.jit(block.apply)
    for i in range(cfg.num_layers):
        layer = jax.tree.map(lambda p: p[i], params["decoder"]["trunk"]["layers"])
        x, _ = apply_block({"params": layer}, x, angles, mask)
        np.testing.assert_allclose(x, trace["dec_layer_outputs"][i], atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("in_size,out_size", [(14, 6), (14, 4), (14, 30), (14, 45), (5, 5), (3, 8)])
def test_bicubic_matches_torch(in_size, out_size, torch):
    x = np.random.default_rng(0).standard_normal((1, 2, in_size, in_size)).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(out_size, out_size + 1), mode="bicubic",
                                           align_corners=False).numpy()
    got = np.einsum("hi,wj,bcij->bchw", bicubic_matrix(in_size, out_size), bicubic_matrix(in_size, out_size + 1), x)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_fit_to_grid():
    x = np.arange(2 * 5 * 5 * 1, dtype=np.float32).reshape(2, 5, 5, 1) + 1
    np.testing.assert_array_equal(fit_to_grid(x, (3, 4)), x[:, :3, :4])  # crop
    padded = np.asarray(fit_to_grid(x, (3, 7)))  # the released 720² → 45² grid → 30×45 case, in small
    np.testing.assert_array_equal(padded[:, :, :5], x[:, :3])
    np.testing.assert_array_equal(padded[:, :, 5:], 0)
    assert fit_to_grid(np.zeros((1, 30, 45, 2)), (30, 45)).shape == (1, 30, 45, 2)
