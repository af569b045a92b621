"""The tiny pipeline on a mesh of 8 forced CPU devices gives the single-device results (and reports
progress from inside its sharded loops): the text encoders sharded, the LM replicated with its
guidance rows split over `data`, the guided DiT CFG 2 × sequence 4 (per device in shard_map).
The per-device paths alone, at more layouts: tests/pipeline/test_per_device.py (slow)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys, jax, numpy as np
    from pathlib import Path
    from landiff_jax import checkpoint
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.parallel import make_mesh
    from landiff_jax.pipeline import GenerateOptions, LanDiff, abstract_params

    assert len(jax.devices()) == 8
    cfg = LanDiffConfig.tiny()
    prompts = ["a red fox", "snow on a quiet town"]
    options = GenerateOptions(seed=3, steps=3)
    ref = LanDiff.random(cfg).generate(prompts, options)
    mesh = make_mesh(data=2, fsdp=1, tensor=4)
    pipe = LanDiff.random(cfg, mesh=mesh)
    try:
        LanDiff(cfg, pipe.params, pipe.tokenizers, mesh=mesh, dit_attention="mosaic")
        raise AssertionError("mosaic attention on CPU devices was accepted")
    except ValueError as e:
        assert "Hopper" in str(e)
    t5 = jax.tree.leaves(pipe.params["t5_lm"])
    assert any(len(a.sharding.device_set) == 8 and not a.sharding.is_fully_replicated for a in t5)
    assert pipe.lm_placement == "replicated"  # a tiny LM: sharding it would cost more than it saves
    assert all(a.sharding.is_fully_replicated for a in jax.tree.leaves(pipe.params["lm"]))
    # a component restored by orbax straight into the mesh's shardings (what from_checkpoint does)
    checkpoint.save_component(Path(sys.argv[1]), "t5_lm", pipe.params["t5_lm"])
    restored = checkpoint.load_component(sys.argv[1], "t5_lm", abstract_params(cfg)["t5_lm"],
                                         shardings=pipe.shardings["t5_lm"])
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(pipe.params["t5_lm"])):
        assert got.sharding == want.sharding
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    events = []  # progress reported from inside the sharded loops
    out = pipe.generate(prompts, options, progress=events.append)
    steps = {e.stage: e.total for e in events if e.event == "step"}
    assert set(steps) == {"LM sampler", "diffusion sampler"} and steps["diffusion sampler"] == 3, steps
    np.testing.assert_array_equal(out.codes, ref.codes)
    np.testing.assert_allclose(out.latents, ref.latents, atol=1e-4)
    np.testing.assert_allclose(out.videos, ref.videos, atol=1)
    print("PIPELINE_SHARDED_OK")
    """
)


def test_sharded_pipeline_equals_single_device(tmp_path):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, cwd=repo, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PIPELINE_SHARDED_OK" in result.stdout
