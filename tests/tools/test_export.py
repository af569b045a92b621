"""Cross-lowering from this CPU-only install (landiff_jax.export, tools/export.py): the tiny
system's generation jobs and the tiny training configs' train steps (on an abstract 64-device
TPU mesh) lower for TPU and CUDA; at full size for TPU in the slow test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from landiff_jax import config_file, export
from landiff_jax.config import LanDiffConfig

REPO = Path(__file__).resolve().parents[2]
PLATFORMS = ("tpu", "cuda")
GENERATION = ("lm_sample", "semantic_feature", "dit_sample", "vae_decode")
TINY_TRAIN = ("configs/lm_tiny.py", "configs/diffusion_control_tiny.py")


@pytest.fixture(scope="module")
def tiny_generation():
    results = export.lower_generation(LanDiffConfig.tiny().with_dtype("bfloat16"), PLATFORMS)
    return {(r.platform, r.name): r for r in results}


@pytest.fixture(scope="module")
def tiny_train():
    mesh = export.abstract_mesh(8, 8)
    jobs = {path: export.train_job(Path(path).stem, config_file.load(REPO / path), mesh) for path in TINY_TRAIN}
    return {(p, path): (export.lower(job.job, p), job) for path, job in jobs.items() for p in PLATFORMS}, mesh


def test_generation_jobs_lower_for_tpu_and_cuda(tiny_generation):
    assert set(tiny_generation) == {(p, n) for p in PLATFORMS for n in GENERATION}
    for (platform, name), r in tiny_generation.items():
        assert r.stablehlo_bytes > 1000 and r.ops > 100, (platform, name)
        assert r.exported.platforms == (platform,) and len(r.exported.in_avals) > 10
        assert r.argument_bytes > 0 and r.output_bytes > 0
        if r.fallback:  # only a kernel may fail to lower here, and it is named; XLA attention then
            assert name != "vae_decode" and "cannot be lowered for" in r.fallback, r.fallback
            assert any(k in r.fallback for k in export.KERNELS.values()), r.fallback
            assert set(r.kernels.values()) <= {"xla"}


def test_tpu_uses_the_pallas_flash_kernel_and_xla_decode(tiny_generation):
    dit = tiny_generation["tpu", "dit_sample"]
    assert dit.kernels == {"dit.attention": "tpu_flash"} and not dit.fallback
    assert "tpu_custom_call" in dit.exported.mlir_module()
    lm = tiny_generation["tpu", "lm_sample"]
    assert lm.kernels == {"lm.decode_attention": "xla"} and "tpu_custom_call" not in lm.exported.mlir_module()


def test_train_steps_lower_on_an_abstract_64_device_mesh(tiny_train):
    results, mesh = tiny_train
    assert mesh.size == 64
    for (platform, path), (r, job) in results.items():
        config = config_file.load(REPO / path)
        assert r.stablehlo_bytes > 1000 and r.kernels == {"train attention": "xla"}, (platform, path)
        assert "micro-batch 64 (1 per data×fsdp shard, raised from the config's 8)" in r.note
        assert "sdy.sharding" in r.exported.mlir_module() and r.exported.nr_devices == 64
        # per device: the state's own shards plus 1/64 of the batch
        assert r.argument_bytes == sum(job.state_bytes.values()) + export.device_bytes(job.job.args[1])
        assert job.state_bytes["opt_state"] > job.state_bytes["trainable"] > 0  # AdamW: two moments
        assert config.stage in ("lm", "diffusion")


def test_compiled_memory_analysis_on_this_machine():
    build = export.generation_jobs(LanDiffConfig.tiny())[1]  # semantic_feature, float32
    r = export.lower(build(export.xla_only(LanDiffConfig.tiny())), "cpu", compile_here=True)
    assert r.memory is not None and r.memory["argument"] == r.argument_bytes > 0 and r.memory["temp"] > 0


def test_tool_rejects_a_bad_platform_in_one_line():
    command = [sys.executable, "tools/export.py", "--platform", "tpu,rocm", "--config", "configs/tiny.py"]
    result = subprocess.run(command, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("export.py: error: platforms must be among")


@pytest.mark.slow
def test_full_size_lowers_for_tpu():
    """By hand: the released system and both full training recipes (minutes on 2 cores)."""
    results = export.lower_generation(LanDiffConfig.full().with_dtype("bfloat16"), ["tpu"])
    assert [r.name for r in results] == list(GENERATION)
    dit = results[2]
    assert dit.kernels == {"dit.attention": "tpu_flash"} and not dit.fallback
    # XLA attention (GPUs without a kernel, CPU): blockwise; no [2 30 17776 17776] score matrix (76 GB in float32)
    full = LanDiffConfig.full().with_dtype("bfloat16")
    xla = export.lower(export.generation_jobs(full)[2](export.xla_only(full)), "cuda")
    assert xla.kernels == {"dit.attention": "xla"} and xla.largest[0] < 2.1e9, xla.largest
    mesh = export.abstract_mesh(8, 8)
    for path in ("configs/lm_2b.py", "configs/diffusion_control.py"):
        job = export.train_job(Path(path).stem, config_file.load(REPO / path), mesh)
        r = export.lower(job.job, "tpu")
        assert r.stablehlo_bytes > 0 and r.exported.nr_devices == 64
