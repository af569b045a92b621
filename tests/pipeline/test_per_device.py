"""On 8 forced CPU devices (one subprocess for the module), generation's per-device paths equal
one device: the guided DiT CFG-parallel × sequence-parallel as the mesh's shape lays it out
(2 × 4: the all-to-all over 4 heads; 1 × 8: 4 heads zero-padded to 8; 77 tokens that the
devices do not divide), the LM with replicated weights and its guidance rows split over devices
(XLA and, interpreted, our Pallas decode kernel inside shard_map), and a converted component
restored by orbax straight into the shardings asked for, and a long video streamed on the 1 × 8
mesh. Slow (one subprocess, ~2.5 min of CPU): the CI runs the 2 × 4 layout end to end (one chunk)
in tests/pipeline/test_sharding.py."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import dataclasses, sys, flax.linen as nn, jax, jax.numpy as jnp, numpy as np
    from pathlib import Path
    from landiff_jax.parallel import guided_layout, make_mesh, param_shardings, replicate

    assert len(jax.devices()) == 8
    rng = np.random.default_rng(0)
    draw = lambda abstract: jax.tree.map(lambda a: jnp.asarray(0.2 * rng.standard_normal(a.shape), jnp.float32),
                                         nn.meta.unbox(abstract))
    sizes_2x4, sizes_1x8 = (2, 1, 4), (1, 1, 8)

    # ---- the guided DiT network
    from landiff_jax.diffusion.config import DiTConfig
    from landiff_jax.diffusion.dit import ControlDiT
    from landiff_jax.diffusion.sampler import guided_network

    cfg = DiTConfig.tiny(num_layers=2, control_layers=1, text_length=5)  # 4 heads; 5 + 3·4·6 = 77 tokens
    k = jax.random.split(jax.random.key(0), 4)
    shape = (2, cfg.latent_frames, cfg.latent_height, cfg.latent_width, cfg.in_channels)  # [uncond; cond]
    x, c_noise = jax.random.normal(k[0], shape), jnp.array([300.0, 300.0])
    context = jnp.concatenate([jnp.zeros((1, cfg.text_length, cfg.text_hidden_size)),
                               jax.random.normal(k[1], (1, cfg.text_length, cfg.text_hidden_size))])
    feature = 0.1 * jax.random.normal(k[2], (1, *shape[1:]))
    params = draw(jax.eval_shape(ControlDiT(cfg).init, k[3], x, c_noise, context, feature)["params"])
    network = lambda mesh, p: jax.jit(lambda p, x: guided_network(cfg, p, context, feature, mesh)(x, c_noise))(p, x)
    ref = network(None, params)
    for sizes, layout in ((sizes_2x4, (("data",), ("tensor",))), (sizes_1x8, ((), ("tensor",)))):
        mesh = make_mesh(*sizes)
        got = guided_layout(mesh, 2)
        assert (got.batch, got.sequence) == layout, got
        out = network(mesh, replicate(params, mesh))
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=2e-5, rtol=1e-5)
        print("DIT_OK", "x".join(map(str, sizes)), flush=True)

    # ---- the LM, replicated, rows per device
    from landiff_jax.lm import LMConfig, SampleOptions, abstract_params, sample

    lm_cfg = LMConfig.tiny()
    lm_params = draw(abstract_params(lm_cfg))
    n = 5
    hidden = jax.random.normal(jax.random.key(1), (2, n, lm_cfg.text_dim))
    mask = np.arange(n)[None, :] >= (n - np.asarray([5, 2]))[:, None]  # left-padded prompts of 5 and 2 tokens
    kw = dict(num_frames=2, motion_score=[0.5, 3.0], rng=jax.random.split(jax.random.key(7), 2), trace=True,
              options=SampleOptions.create(guidance_scale=4.0, temperature=0.9, top_p=0.8))
    ref = sample(lm_params, lm_cfg, hidden, mask, **kw)
    # 4 rows ([cond; uncond] of 2 prompts): over data (2 a device) / over tensor (1 a device)
    four = make_mesh(1, 1, 4, devices=jax.devices()[:4])
    for impl, mesh in (("xla", make_mesh(*sizes_2x4)), ("pallas_interpret", four)):
        out = sample(replicate(lm_params, mesh), dataclasses.replace(lm_cfg, decode_attention=impl), hidden, mask,
                     mesh=mesh, **kw)
        np.testing.assert_array_equal(out.tokens, ref.tokens)
        np.testing.assert_allclose(out.logits, ref.logits, atol=2e-5, rtol=2e-5)
        print("LM_OK", impl, flush=True)

    # ---- restore into shardings
    from landiff_jax import checkpoint

    directory = Path(sys.argv[1])
    abstract = jax.eval_shape(ControlDiT(cfg).init, k[3], x, c_noise, context, feature)["params"]
    checkpoint.save_component(directory, "diffusion", {"dit": jax.device_get(params)})
    mesh = make_mesh(*sizes_2x4)
    want = {"dit": param_shardings(abstract, mesh, rules=(("embed", "fsdp"), ("heads", "tensor"), ("mlp", "tensor")))}
    restored = checkpoint.load_component(directory, "diffusion", {"dit": abstract}, shardings=want, dtype=jnp.bfloat16)
    split = 0
    for got, spec, value in zip(jax.tree.leaves(restored), jax.tree.leaves(want), jax.tree.leaves(params)):
        assert got.sharding == spec and got.dtype == jnp.bfloat16, (got.sharding, spec, got.dtype)
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(value.astype(jnp.bfloat16), np.float32))
        split += not spec.is_fully_replicated
    assert split > 3, split
    single = jax.sharding.SingleDeviceSharding(jax.devices()[5])
    one = checkpoint.load_component(directory, "diffusion", {"dit": abstract},
                                    shardings=jax.tree.map(lambda _: single, want))
    assert all(a.sharding == single for a in jax.tree.leaves(one))
    print("RESTORE_OK", flush=True)

    # ---- a long video streamed on the mesh (LM groups in a sliding window, DiT chunks with a clean prefix)
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.pipeline import GenerateOptions, LanDiff

    tiny, prompts = LanDiffConfig.tiny(), ["a red fox", "snow on a quiet town"]
    options = GenerateOptions(seed=3, steps=2, num_frames=tiny.streamed_frames()[0], lm_window=1)
    ref = LanDiff.random(tiny).generate(prompts, options)
    pipe = LanDiff.random(tiny, mesh=make_mesh(*sizes_1x8))
    chunks = list(pipe.generate_stream(prompts, options))
    assert len(chunks) > 1 and pipe.lm_placement == "replicated", len(chunks)
    np.testing.assert_array_equal(np.concatenate([c.codes for c in chunks], axis=1), ref.codes)
    np.testing.assert_allclose(np.concatenate([c.latents for c in chunks], axis=1), ref.latents, atol=1e-4)
    np.testing.assert_allclose(np.concatenate([c.frames for c in chunks], axis=1), ref.videos, atol=1)
    print("STREAM_OK", flush=True)
    """
)


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path_factory.mktemp("component"))], env=env,
                            cwd=repo, capture_output=True, text=True, timeout=900)
    return result.stdout + "\n" + result.stderr[-3000:]


@pytest.mark.parametrize("layout", ["2x1x4", "1x1x8"])
def test_dit_cfg_and_sequence_parallel_equal_one_device(output, layout):
    assert f"DIT_OK {layout}" in output, output


@pytest.mark.parametrize("decode", ["xla", "pallas_interpret"])
def test_lm_rows_per_device_equal_one_device(output, decode):
    assert f"LM_OK {decode}" in output, output


def test_restore_straight_into_shardings(output):
    assert "RESTORE_OK" in output, output


def test_long_video_streams_on_the_mesh_as_on_one_device(output):
    assert "STREAM_OK" in output, output
