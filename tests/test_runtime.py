"""Kernel choice in one place: `runtime` picks from the devices, the mesh and the dtype, and the
configs carry the concrete choice (fake devices stand in for GPUs); the LM's placement rule on a
mesh; the persistent compilation cache across processes."""

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from landiff_jax import runtime
from landiff_jax.config import LanDiffConfig


@dataclasses.dataclass(frozen=True)
class FakeDevice:
    platform: str
    compute_capability: str = ""
    device_kind: str = "fake"


H100, A100, CPU = FakeDevice("gpu", "9.0", "H100"), FakeDevice("gpu", "8.0", "A100"), FakeDevice("cpu")


def kernels(cfg):
    return (cfg.t5_lm.attention_implementation, cfg.tokenizer.attention, cfg.tokenizer.theia.attention,
            cfg.lm.decode_attention, cfg.dit.attention)


def test_choice_per_device_and_mesh():
    full = LanDiffConfig.full()  # DiT head dim 64
    bf16 = full.with_dtype("bfloat16")
    assert kernels(runtime.configure(bf16, devices=[H100])) == ("cudnn", "cudnn", "cudnn", "pallas", "mosaic")
    assert kernels(runtime.configure(bf16, devices=[A100])) == ("cudnn", "cudnn", "cudnn", "pallas", "cudnn")
    # a mesh keeps our kernels: the DiT runs per device inside shard_map, the 2B LM too (replicated)
    assert kernels(runtime.configure(bf16, devices=[H100] * 8)) == ("cudnn", "cudnn", "cudnn", "pallas", "mosaic")
    # ... but an LM with sharded weights is partitioned by XLA, which does not split a Pallas call
    sharded = runtime.configure(bf16, devices=[H100] * 2, lm_placement="sharded")
    assert (sharded.lm.decode_attention, sharded.dit.attention) == ("xla", "mosaic")
    assert kernels(runtime.configure(full, devices=[H100])) == ("xla",) * 5  # float32: XLA (parity)
    assert kernels(runtime.configure(bf16, devices=[CPU])) == ("xla",) * 5
    # the Hopper kernel only at the head dim it was tuned for
    wide = dataclasses.replace(bf16, dit=dataclasses.replace(bf16.dit, hidden_size=1920, num_heads=15))
    assert runtime.configure(wide, devices=[H100]).dit.attention == "cudnn"


def test_forced_dit_attention_is_checked():
    bf16 = LanDiffConfig.full().with_dtype("bfloat16")
    assert runtime.configure(bf16, devices=[A100], dit_attention="xla").dit.attention == "xla"
    assert runtime.configure(bf16, devices=[H100] * 2, dit_attention="mosaic").dit.attention == "mosaic"
    with pytest.raises(ValueError, match="needs a Hopper GPU"):
        runtime.configure(bf16, devices=[A100], dit_attention="mosaic")
    with pytest.raises(ValueError, match="needs a GPU"):
        runtime.configure(bf16, devices=[CPU], dit_attention="cudnn")
    with pytest.raises(ValueError, match="must be one of"):
        runtime.configure(bf16, devices=[CPU], dit_attention="flash")


def test_tpu_gets_pallas_flash_attention_on_one_device_and_xla_decode():
    tpu = FakeDevice("tpu", device_kind="TPU v5p")
    bf16 = LanDiffConfig.full().with_dtype("bfloat16")
    one = runtime.configure(bf16, devices=[tpu])
    assert kernels(one) == ("tpu_flash", "tpu_flash", "tpu_flash", "xla", "tpu_flash")  # the LM decodes through XLA
    assert one.lm.train_attention == "tpu_flash"
    # a mesh: the DiT keeps the kernel per device inside shard_map; the text encoders, and an LM whose
    # weights are sharded (a pod), go through XLA (Pallas calls are not partitioned; long sequences
    # take the blockwise path); an LM replicated on each device prefills with the kernel
    assert kernels(runtime.configure(bf16, devices=[tpu] * 64)) == ("xla", "xla", "xla", "xla", "tpu_flash")
    eight = runtime.configure(bf16, devices=[tpu] * 8)
    assert kernels(eight) == ("xla", "xla", "xla", "xla", "tpu_flash") and eight.lm.train_attention == "tpu_flash"
    assert kernels(runtime.configure(LanDiffConfig.full(), devices=[tpu])) == ("xla",) * 5  # float32: parity


def test_lm_weights_replicated_where_sharding_costs_more_than_it_saves():
    lm = LanDiffConfig.full().with_dtype("bfloat16").lm  # 2B: 4.1 GB of weights
    for devices in (2, 4, 8):  # halving the reads saves 0.43-0.75 ms a step, 48 all-reduces cost 0.82 ms
        assert runtime.lm_weights(lm, devices) == "replicated"
    assert runtime.lm_weights(lm, 1) == "replicated"
    # the same LM in float32 on two devices: sharding saves 0.85 ms a step, more than it costs
    assert runtime.lm_weights(LanDiffConfig.full().lm, 2) == "sharded"
    wide = dataclasses.replace(lm, hidden=4096, num_heads=32)  # ~4x the weights
    assert runtime.lm_weights(wide, 2) == "sharded"
    assert runtime.lm_weights(lm, 2, force="sharded") == "sharded"
    with pytest.raises(ValueError, match="must be one of"):
        runtime.lm_weights(lm, 2, force="split")


CACHE_SCRIPT = textwrap.dedent(
    """
    import sys, jax, jax.numpy as jnp
    from landiff_jax import runtime
    hits = []
    jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits")
                                           else None)
    print("DIR", runtime.use_compilation_cache(sys.argv[1]))
    jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((64, 64))).block_until_ready()
    print("HITS", len(hits))
    """
)


def test_compilation_cache_is_kept_across_processes(tmp_path):
    """The first process compiles and writes the cache directory (created); the second loads from it."""
    cache = tmp_path / "a" / "cache"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    repo = Path(__file__).resolve().parents[1]

    def run():
        result = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, str(cache)], env=env, cwd=repo,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    first = run()
    assert f"DIR {cache}" in first and "HITS 0" in first
    written = sorted(p.name for p in cache.iterdir())
    assert written, "nothing written to the cache"
    second = run()
    assert int(second.split("HITS ")[1]) >= 1  # the jitted function (and jnp.ones') executables loaded
    assert sorted(p.name for p in cache.iterdir()) == written  # nothing compiled anew


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv(runtime.JAX_CACHE_ENV, str(tmp_path / "jax"))
    assert runtime.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(runtime.CACHE_ENV)
    assert runtime.default_cache_dir() == tmp_path / "jax"  # jax's setting (the test session's cache)
    monkeypatch.delenv(runtime.JAX_CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.default_cache_dir() == tmp_path / "landiff_jax" / "xla"
