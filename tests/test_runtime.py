"""Kernel choice in one place: `runtime` picks from the devices, the mesh and the dtype, and the
configs carry the concrete choice (fake devices stand in for GPUs)."""

import dataclasses

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
    # a multi-device mesh: Pallas calls are not partitioned
    assert kernels(runtime.configure(bf16, devices=[H100] * 8)) == ("cudnn", "cudnn", "cudnn", "xla", "cudnn")
    assert kernels(runtime.configure(full, devices=[H100])) == ("xla",) * 5  # float32: XLA (parity)
    assert kernels(runtime.configure(bf16, devices=[CPU])) == ("xla",) * 5
    # the Hopper kernel only at the head dim it was tuned for
    wide = dataclasses.replace(bf16, dit=dataclasses.replace(bf16.dit, hidden_size=1920, num_heads=15))
    assert runtime.configure(wide, devices=[H100]).dit.attention == "cudnn"


def test_forced_dit_attention_is_checked():
    bf16 = LanDiffConfig.full().with_dtype("bfloat16")
    assert runtime.configure(bf16, devices=[A100], dit_attention="xla").dit.attention == "xla"
    with pytest.raises(ValueError, match="runs on one device"):
        runtime.configure(bf16, devices=[H100] * 2, dit_attention="mosaic")
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
    # a pod mesh: XLA (Pallas calls are not partitioned; long sequences take the blockwise path)
    assert kernels(runtime.configure(bf16, devices=[tpu] * 64)) == ("xla",) * 5
    assert kernels(runtime.configure(LanDiffConfig.full(), devices=[tpu])) == ("xla",) * 5  # float32: parity
