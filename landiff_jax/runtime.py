"""Kernel choice in one place: from the devices, the mesh and the dtype, once, before anything
is traced. The choice is written into the configs (`T5Config.attention_implementation`,
`TokenizerConfig.attention`, `LMConfig.decode_attention`, `DiTConfig.attention`); models only
read their config and never look at devices.

    masked attention (T5, tokenizer) and the LM's causal training attention: cuDNN for bf16/fp16
                                       on GPU; jax's Pallas TPU flash attention ('tpu_flash') for
                                       bf16/fp16 on ONE TPU (masked or biased calls fall back to XLA);
                                       else XLA
    DiT attention (unmasked):          our Hopper kernel ('mosaic') for bf16/fp16 on ONE Hopper
                                       GPU at head dim 64; cuDNN on other GPUs and on a mesh;
                                       'tpu_flash' for bf16/fp16 on ONE TPU; else XLA
    LM decode steps:                   our Pallas decode kernel for bf16/fp16 on ONE GPU; else XLA
                                       (TPU included)
Pallas calls are not split by XLA's SPMD partitioner, hence XLA/cuDNN on a multi-device mesh.
'xla' is itself memory-bounded: above a score-matrix size the dispatcher (`nn.attention`) runs
the blockwise attention, so CPU, TPU meshes and GPUs without a kernel fit long sequences.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from landiff_jax.config import LanDiffConfig
from landiff_jax.kernels import HOPPER_HEAD_DIMS

_HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


@dataclasses.dataclass(frozen=True)
class Kernels:
    attention: str  # masked / biased attention: 'cudnn' | 'tpu_flash' | 'xla'
    full_attention: str  # unmasked attention (DiT): 'mosaic' | 'cudnn' | 'tpu_flash' | 'xla'
    decode: str  # one query over a KV cache (LM decode steps): 'pallas' | 'xla'


def is_hopper(device) -> bool:
    """Compute capability 9.x: H100 / H200."""
    return device.platform == "gpu" and str(getattr(device, "compute_capability", "")).startswith("9.")


def choose(dtype, head_dim: int, devices: Sequence[Any] | None = None, mesh: Mesh | None = None) -> Kernels:
    """The kernels for computing in `dtype` on `devices` (default: the mesh's, else all local)."""
    if devices is None:
        devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
    gpu = devices[0].platform == "gpu"
    one_device = len(devices) == 1
    if devices[0].platform == "tpu" and one_device and jnp.dtype(dtype) in _HALF:
        return Kernels("tpu_flash", "tpu_flash", "xla")
    if not (gpu and jnp.dtype(dtype) in _HALF):
        return Kernels("xla", "xla", "xla")
    hopper = one_device and is_hopper(devices[0]) and head_dim in HOPPER_HEAD_DIMS
    return Kernels("cudnn", "mosaic" if hopper else "cudnn", "pallas" if one_device else "xla")


def configure(cfg: LanDiffConfig, *, mesh: Mesh | None = None, devices: Sequence[Any] | None = None,
              dit_attention: str | None = None) -> LanDiffConfig:
    """`cfg` with every kernel chosen for `devices` / `mesh` (at the config's compute dtypes);
    `dit_attention` forces the DiT's ('xla', 'cudnn', 'mosaic'; checked against the devices)."""
    if devices is None:
        devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
    if dit_attention is not None:
        _check_dit_attention(dit_attention, cfg.dit.head_dim, devices)
    pick = lambda c, head_dim: choose(c.dtype, head_dim, devices)  # noqa: E731
    tok = pick(cfg.tokenizer, cfg.tokenizer.head_dim)
    theia = cfg.tokenizer.theia and dataclasses.replace(cfg.tokenizer.theia, attention=tok.attention)
    dit = pick(cfg.dit, cfg.dit.head_dim)
    lm = pick(cfg.lm, cfg.lm.head_dim)
    return dataclasses.replace(
        cfg,
        t5_lm=dataclasses.replace(cfg.t5_lm, attention_implementation=pick(cfg.t5_lm, cfg.t5_lm.d_kv).attention),
        t5_dit=dataclasses.replace(cfg.t5_dit, attention_implementation=pick(cfg.t5_dit, cfg.t5_dit.d_kv).attention),
        tokenizer=dataclasses.replace(cfg.tokenizer, attention=tok.attention, theia=theia),
        lm=dataclasses.replace(cfg.lm, decode_attention=lm.decode, train_attention=lm.attention),
        dit=dataclasses.replace(cfg.dit, attention=dit_attention or dit.full_attention),
    ).check()


def _check_dit_attention(implementation: str, head_dim: int, devices: Sequence[Any]) -> None:
    allowed = ("xla", "cudnn", "mosaic")
    if implementation not in allowed:
        raise ValueError(f"DiT attention must be one of {allowed}, got {implementation!r}")
    if implementation == "mosaic":
        if len(devices) != 1:
            raise ValueError("the 'mosaic' DiT attention runs on one device; use 'cudnn' on a mesh")
        if not is_hopper(devices[0]):
            raise ValueError(f"the 'mosaic' attention needs a Hopper GPU (H100/H200), not {devices[0].device_kind}")
        if head_dim not in HOPPER_HEAD_DIMS:
            raise ValueError(f"the 'mosaic' attention supports head dims {HOPPER_HEAD_DIMS}, the DiT has {head_dim}")
    if implementation == "cudnn" and devices[0].platform != "gpu":
        raise ValueError(f"the 'cudnn' attention needs a GPU, not {devices[0].platform}")
