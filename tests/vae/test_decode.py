"""Equivalences and input checks of the VAE code paths, on a tiny random model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax.vae import api, layers
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.layers import CausalConv3d
from landiff_jax.vae.model import Decoder, Encoder, abstract_params

CFG = VAEConfig.tiny()


@pytest.fixture(scope="module")
def params():
    """Random tiny weights drawn on the host (quicker on CPU than compiling an init):
    kernels N(0, 1/fan_in), norm scales 1 + N(0, 0.1²), biases N(0, 0.1²)."""
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        noise = rng.standard_normal(leaf.shape).astype(np.float32)
        if path[-1].key == "kernel":
            return noise / np.sqrt(np.prod(leaf.shape[:-1]))
        return 0.1 * noise + (1.0 if path[-1].key == "scale" else 0.0)

    return jax.tree_util.tree_map_with_path(draw, nn.meta.unbox(abstract_params(CFG)))


@pytest.fixture(scope="module")
def latents():
    return jax.random.normal(jax.random.key(1), (2, 7, 2, 3, CFG.z_channels))


@pytest.fixture(scope="module")
def chunked(params, latents):
    return np.asarray(api.decode_latents(params, CFG, latents))


def test_chunked_decode_equals_python_loop_over_chunks(params, latents, chunked):
    """The scanned decode = the original's loop: [0:3], then [2i+1:2i+3], cache carried."""
    step = jax.jit(lambda z, cache: Decoder(CFG).apply({"params": params["decoder"]}, z, cache))
    z = latents / CFG.scale_factor
    video, cache = step(z[:, :3], None)
    outputs = [video]
    for i in range(1, (z.shape[1] - 1) // 2):
        video, cache = step(z[:, 2 * i + 1: 2 * i + 3], cache)
        outputs.append(video)
    expected = np.concatenate(outputs, axis=1)
    assert chunked.shape == (2, 25, 16, 24, 3)
    np.testing.assert_allclose(chunked, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pushes", [(3, 2, 2), (4, 3)])
def test_latent_stream_equals_the_chunked_decode(params, latents, chunked, pushes):
    """Fed in pieces (a piece that does not end a chunk waits), the stream gives the chunked
    decode's frames; a leftover latent frame is refused."""
    stream, videos, at = api.LatentStream(params, CFG), [], 0
    for n in pushes:
        videos.append(np.asarray(stream.push(latents[:, at:at + n])))
        at += n
    stream.close()
    assert [v.shape[1] for v in videos] == ([9, 8, 8] if pushes == (3, 2, 2) else [9, 16])
    np.testing.assert_allclose(np.concatenate(videos, axis=1), chunked, atol=1e-5, rtol=1e-5)
    stream.push(latents[:, :1])
    with pytest.raises(ValueError, match="1 latent frame"):
        stream.close()


def test_chunked_decode_is_one_scan(params, latents):
    jaxpr = jax.make_jaxpr(lambda p, z: api._decode_chunked(p, z, cfg=CFG))(params, latents)
    assert str(jaxpr).count("scan[") == 1


def test_causal_conv_cache_continues_the_sequence():
    """conv([x1; x2]) = [conv(x1); conv(x2 with x1's cache)]: the causal cache is exact."""
    conv = CausalConv3d(CFG, 8)
    x = jax.random.normal(jax.random.key(2), (1, 5, 4, 4, 3))
    p = conv.init(jax.random.key(3), x)
    whole, _ = conv.apply(p, x)
    first, cache = conv.apply(p, x[:, :3])
    rest, _ = conv.apply(p, x[:, 3:], cache)
    np.testing.assert_allclose(np.concatenate([first, rest], 1), whole, atol=1e-5)


def test_even_latent_length_raises_or_drops_like_the_original(params, latents, chunked):
    longer = jnp.concatenate([latents, latents[:, -1:]], axis=1)  # 8 latent frames
    with pytest.raises(ValueError, match="even"):
        api.decode_latents(params, CFG, longer)
    dropped = api.decode_latents(params, CFG, longer, drop_last_even_frame=True)
    np.testing.assert_array_equal(np.asarray(dropped), chunked)


@pytest.mark.parametrize("shape, match", [
    ((1, 1, 2, 3, 4), "at least 3"),
    ((1, 7, 2, 3, 5), "channels last"),
    ((7, 2, 3, 4), "channels last"),
])
def test_bad_latents_raise_before_compute(params, shape, match):
    with pytest.raises(ValueError, match=match):
        api.decode_latents(params, CFG, jnp.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 5, 16, 16, 4), (5, 16, 16, 3), (1, 0, 16, 16, 3)])
def test_bad_video_raises_before_compute(params, shape):
    with pytest.raises(ValueError, match="channels last"):
        api.encode(params, CFG, jnp.zeros(shape), key=jax.random.key(0))


def test_bfloat16_chunked_decode_tracks_float32(params, latents, chunked):
    cfg = VAEConfig.tiny(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, precision="default")
    p16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    video = np.asarray(api.decode_latents(p16, cfg, latents))
    assert video.dtype == np.float32 and video.shape == chunked.shape
    scale = np.abs(chunked).max()
    assert np.abs(video - chunked).max() < 0.1 * scale


def test_sample_latents_key_and_noise():
    mean = jnp.arange(6.0).reshape(1, 1, 1, 2, 3)
    logvar = jnp.full_like(mean, -1.0)
    noise = jnp.ones_like(mean)
    np.testing.assert_allclose(api.sample_latents(CFG, mean, logvar, noise=noise),
                               CFG.scale_factor * (mean + np.exp(-0.5)), rtol=1e-6)
    a = api.sample_latents(CFG, mean, logvar, key=jax.random.key(4))
    b = api.sample_latents(CFG, mean, logvar, key=jax.random.key(4))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="exactly one"):
        api.sample_latents(CFG, mean, logvar)
    assert api.split_moments(CFG, jnp.array([[0.0, 50.0]]))[1] == CFG.logvar_max


def test_frame_value_conversions():
    x = jnp.array([-1.5, -1.0, 0.0, 1.0, 1.5])
    np.testing.assert_allclose(api.to_unit(x), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(api.to_uint8(x), [0, 0, 128, 255, 255])
    np.testing.assert_allclose(api.from_unit(api.to_unit(x)), [-1.0, -1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(api.uint8_to_unit(np.array([0, 255], np.uint8)), [0.0, 1.0])


def test_convolutions_in_time_slices_give_the_same_encoding_and_decoding(params, latents, monkeypatch):
    """With MAX_CONV_ELEMENTS small, every convolution of the encoder and the decoder runs on
    overlapping time slices (uneven ones included): the posterior and the decoded video are those
    of whole-clip convolutions, and the traced programs do hold more convolutions."""
    video = jax.random.uniform(jax.random.key(2), (1, 9, 32, 48, 3), minval=-1.0, maxval=1.0)

    def run():  # fresh functions: jax reuses the trace of a function it has seen
        encode = lambda p, v: Encoder(CFG).apply({"params": p["encoder"]}, v)  # noqa: E731
        decode = lambda p, z: Decoder(CFG).apply({"params": p["decoder"]}, api.to_decoder_space(CFG, z))[0]  # noqa: E731
        convs = [str(jax.make_jaxpr(f)(params, x)).count("conv_general_dilated")
                 for f, x in ((encode, video), (decode, latents))]
        return [np.asarray(jax.jit(f)(params, x)) for f, x in ((encode, video), (decode, latents))], convs

    whole, whole_convs = run()
    monkeypatch.setattr(layers, "MAX_CONV_ELEMENTS", 3 * 32 * 48 * 32)  # slices of 1 to 3 frames at level 0
    sliced, sliced_convs = run()
    assert all(s > w for s, w in zip(sliced_convs, whole_convs)), (sliced_convs, whole_convs)
    for got, want in zip(sliced, whole):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
