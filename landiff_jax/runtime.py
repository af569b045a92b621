"""Kernel choice in one place: from the devices, the mesh and the dtype, once, before anything
is traced. The choice is written into the configs (`T5Config.attention_implementation`,
`TokenizerConfig.attention`, `LMConfig.decode_attention`, `DiTConfig.attention`); models only
read their config and never look at devices.

    masked attention (T5, tokenizer) and the LM's causal training attention: cuDNN for bf16/fp16
                                       on GPU; jax's Pallas TPU flash attention ('tpu_flash') for
                                       bf16/fp16 on ONE TPU, or per device where the LM's weights
                                       are replicated (masked or biased calls fall back to XLA);
                                       else XLA
    DiT attention (unmasked):          our Hopper kernel ('mosaic') for bf16/fp16 on Hopper GPUs
                                       at head dim 64; cuDNN on other GPUs; 'tpu_flash' for
                                       bf16/fp16 on TPUs; else XLA
    LM decode steps:                   our Pallas decode kernel for bf16/fp16 on GPU when the LM
                                       runs per device (one device, or replicated weights); else XLA
                                       (TPU included)
Pallas calls are not split by XLA's SPMD partitioner, so on a mesh generation runs them per
device inside `shard_map`: the guided DiT always (CFG- and sequence-parallel by the mesh's
shape, `parallel.guided_layout`), the LM where its weights are replicated (`lm_weights`).
'xla' is itself memory-bounded: above a score-matrix size the dispatcher (`nn.attention`) runs
the blockwise attention, so CPU, TPU meshes and GPUs without a kernel fit long sequences.

Also here: the persistent compilation cache (`use_compilation_cache`), on by default in the
tools that compile.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from landiff_jax import lm
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
              dit_attention: str | None = None, lm_placement: str | None = None) -> LanDiffConfig:
    """`cfg` with every kernel chosen for `devices` / `mesh` (at the config's compute dtypes);
    `dit_attention` forces the DiT's ('xla', 'cudnn', 'mosaic'; checked against the devices);
    `lm_placement` forces the LM's weights' placement (`lm_weights`)."""
    if devices is None:
        devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
    if dit_attention is not None:
        _check_dit_attention(dit_attention, cfg.dit.head_dim, devices)
    pick = lambda c, head_dim: choose(c.dtype, head_dim, devices)  # noqa: E731
    tok = pick(cfg.tokenizer, cfg.tokenizer.head_dim)
    theia = cfg.tokenizer.theia and dataclasses.replace(cfg.tokenizer.theia, attention=tok.attention)
    dit = choose(cfg.dit.dtype, cfg.dit.head_dim, devices[:1])  # per device inside shard_map
    per_device = lm_weights(cfg.lm, len(devices), lm_placement) == "replicated"
    lm_kernels = choose(cfg.lm.dtype, cfg.lm.head_dim, devices[:1] if per_device else devices)
    return dataclasses.replace(
        cfg,
        t5_lm=dataclasses.replace(cfg.t5_lm, attention_implementation=pick(cfg.t5_lm, cfg.t5_lm.d_kv).attention),
        t5_dit=dataclasses.replace(cfg.t5_dit, attention_implementation=pick(cfg.t5_dit, cfg.t5_dit.d_kv).attention),
        tokenizer=dataclasses.replace(cfg.tokenizer, attention=tok.attention, theia=theia),
        lm=dataclasses.replace(cfg.lm, decode_attention=lm_kernels.decode, train_attention=lm_kernels.attention),
        dit=dataclasses.replace(cfg.dit, attention=dit_attention or dit.full_attention),
    ).check()


def _check_dit_attention(implementation: str, head_dim: int, devices: Sequence[Any]) -> None:
    allowed = ("xla", "cudnn", "mosaic")
    if implementation not in allowed:
        raise ValueError(f"DiT attention must be one of {allowed}, got {implementation!r}")
    if implementation == "mosaic":
        if not is_hopper(devices[0]):
            raise ValueError(f"the 'mosaic' attention needs a Hopper GPU (H100/H200), not {devices[0].device_kind}")
        if head_dim not in HOPPER_HEAD_DIMS:
            raise ValueError(f"the 'mosaic' attention supports head dims {HOPPER_HEAD_DIMS}, the DiT has {head_dim}")
    if implementation == "cudnn" and devices[0].platform != "gpu":
        raise ValueError(f"the 'cudnn' attention needs a GPU, not {devices[0].platform}")


# ---- the LM's weights on a mesh ---------------------------------------------------------------
LM_PLACEMENTS = ("replicated", "sharded")
# A decode step reads every weight once (memory-bound) and, with the weights sharded, all-reduces
# twice per layer. Two H200s (2026-11-30): 1,244 steps of the 2B LM took 2.09 s on one GPU and
# 2.59 s sharded over two, i.e. +0.40 ms per step where halving 4.1 GB of reads at HBM_BYTES_PER_S
# saved 0.43 ms: ALL_REDUCE_S = (0.40 + 0.43) ms / 48 all-reduces ≈ 17 µs each.
HBM_BYTES_PER_S = 4.8e12  # H200
ALL_REDUCE_S = 17e-6


def lm_weights(cfg: lm.LMConfig, devices: int, force: str | None = None) -> str:
    """Where the LM's weights go on `devices` (> 1) devices: 'sharded' by the logical-axis rules
    when the weight reads that sharding saves per decode step, bytes · (1 − 1/devices) /
    HBM_BYTES_PER_S, exceed its 2 · layers all-reduces of ALL_REDUCE_S; else 'replicated' (each
    guidance row on its own device, logits gathered: `lm.sample(mesh=)`). The 2B LM in bf16
    stays replicated on 2 to 8 devices (saves 0.43-0.75 ms, costs 0.82 ms). One device:
    'replicated'. `force`: one of LM_PLACEMENTS."""
    if force is not None:
        if force not in LM_PLACEMENTS:
            raise ValueError(f"LM placement must be one of {LM_PLACEMENTS}, got {force!r}")
        return force
    if devices == 1:
        return "replicated"
    size = sum(math.prod(a.shape) for a in jax.tree.leaves(lm.abstract_params(cfg)))
    saved = size * jnp.dtype(cfg.param_dtype).itemsize * (1 - 1 / devices) / HBM_BYTES_PER_S
    return "sharded" if saved > 2 * cfg.num_layers * ALL_REDUCE_S else "replicated"


# ---- persistent compilation cache -------------------------------------------------------------
CACHE_ENV = "LANDIFF_JAX_COMPILATION_CACHE"
JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"  # jax's own setting of the directory


def default_cache_dir() -> Path:
    """$LANDIFF_JAX_COMPILATION_CACHE, else jax's own $JAX_COMPILATION_CACHE_DIR (the test session
    sets it, so that the tools it runs share its cache), else $XDG_CACHE_HOME (default
    ~/.cache)/landiff_jax/xla."""
    for name in (CACHE_ENV, JAX_CACHE_ENV):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "landiff_jax" / "xla"


def use_compilation_cache(directory: str | Path | None) -> Path | None:
    """Keep compiled executables in `directory` (created if needed) across processes: a later run
    of the same functions at the same shapes on the same devices and jax version loads them
    instead of compiling (jax's persistent cache; what compiles in under
    `jax_persistent_cache_min_compile_time_secs`, default 1 s, is not kept). None: off. Call it
    before anything compiles. Returns the directory in use."""
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = Path(directory).expanduser().absolute()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
