"""Cross-lowering with `jax.export`: the system's compiled jobs for a backend this machine need
not have ('tpu', 'cuda' or 'cpu'), from abstract shapes only (`jax.ShapeDtypeStruct`: no weight
is allocated, nothing runs).

Jobs of a system config, each for one device with the kernels `runtime` picks on the target
(stand-in devices: one TPU, one H100, one CPU): the LM's sampling loop, the semantic conditioner
(the tokenizer's decoder and the upsampler: the DiT's control input), the guided DiT sampling
loop and the chunked VAE decode. Jobs of a training config: its train step under an abstract
mesh (`jax.sharding.AbstractMesh`, data × fsdp × tensor) with the trainer's own shardings and
kernel choice (`train.step`, `train.task`).

A kernel that cannot be lowered for the target from this install is named with its error, and
the job is lowered again with XLA attention in its place (`Lowered.fallback`).

Per job: the StableHLO module's size (serialized bytes, op count); its largest tensor type (e.g.
a [b h s s] score matrix would show here); per-device bytes of the arguments (weights and, for
a train step, optimizer state, from their shardings) and outputs; and, where this machine can
compile for the platform (its own, one device), XLA's compiled memory analysis.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import traceback
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export
from jax.sharding import AbstractMesh

from landiff_jax import pipeline, runtime, vae
from landiff_jax.config import LanDiffConfig
from landiff_jax.diffusion import conditioner
from landiff_jax.diffusion import sampler as dit_sampler
from landiff_jax.diffusion.schedule import denoiser_sigma_table, step_schedule
from landiff_jax.lm import layout
from landiff_jax.lm import sampler as lm_sampler
from landiff_jax.parallel import MESH_AXES
from landiff_jax.text.tokenizer import LM_MAX_LENGTH

PLATFORMS = ("tpu", "cuda", "cpu")


@dataclasses.dataclass(frozen=True)
class TargetDevice:
    """Stands in for one device of the target platform where `runtime` chooses kernels."""

    platform: str  # a jax device platform: 'tpu', 'gpu' or 'cpu'
    device_kind: str
    compute_capability: str = ""


KERNELS = {  # what each attention implementation lowers to
    "cudnn": "cuDNN fused attention (jax.nn.dot_product_attention implementation='cudnn')",
    "mosaic": "our Hopper flash attention (kernels.hopper_attention, Pallas Mosaic GPU)",
    "pallas": "our decode attention (kernels.pallas_decode_attention, Pallas on jax's default GPU backend)",
    "tpu_flash": "jax's Pallas TPU flash attention (jax.experimental.pallas.ops.tpu.flash_attention)",
}

TARGETS = {"tpu": TargetDevice("tpu", "TPU"), "cuda": TargetDevice("gpu", "H100", "9.0"),
           "cpu": TargetDevice("cpu", "cpu")}


@dataclasses.dataclass(frozen=True)
class Job:
    """A jitted function and abstract arguments (with shardings under a mesh) to lower."""

    name: str
    fn: Callable
    args: tuple
    kernels: Mapping[str, str]  # config field -> the attention implementation it lowers with
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Lowered:
    name: str
    platform: str
    kernels: Mapping[str, str]
    stablehlo_bytes: int  # the serialized module (what `Exported.serialize` carries)
    ops: int  # operations in the module
    largest: tuple[int, str]  # (bytes, type) of its largest tensor
    argument_bytes: int  # per device, of the arguments the module reads (jit drops unused ones)
    output_bytes: int  # per device
    memory: Mapping[str, int] | None  # XLA's compiled memory analysis (bytes), where compiled here
    exported: Any  # the jax.export.Exported
    fallback: str = ""  # why a kernel was replaced by XLA attention
    note: str = ""


# ---- measuring a module --------------------------------------------------------------------

_ITEMSIZE = {"i1": 1, "i8": 1, "ui8": 1, "i16": 2, "ui16": 2, "bf16": 2, "f16": 2, "i32": 4, "ui32": 4, "f32": 4,
             "i64": 8, "ui64": 8, "f64": 8}
_TENSOR = re.compile(r"tensor<((?:\d+x)*)([a-z][a-z0-9]*)")
_OP = re.compile(r'^\s*(?:%[^=\n]+= )?"?[a-z_]+\.[a-z_.]+', re.M)


def largest_tensor(mlir_text: str) -> tuple[int, str]:
    """(bytes, 'tensor<…>') of the largest ranked tensor type in an MLIR module's text."""
    best = (0, "")
    for dims, element in _TENSOR.findall(mlir_text):
        size = math.prod(int(n) for n in dims.split("x")[:-1]) * _ITEMSIZE.get(element, 1)
        best = max(best, (size, f"tensor<{dims}{element}>"))
    return best


def count_ops(mlir_text: str) -> int:
    return len(_OP.findall(mlir_text))


def device_bytes(tree) -> int:
    """Bytes one device holds of the abstract arrays in `tree` (sharded leaves: their shard)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        sharding = getattr(leaf, "sharding", None)
        shape = sharding.shard_shape(leaf.shape) if sharding is not None else leaf.shape
        total += math.prod(shape) * leaf.dtype.itemsize  # (typed PRNG keys have an itemsize too)
    return total


def lower(job: Job, platform: str, *, compile_here: bool = False, fallback: str = "") -> Lowered:
    """`jax.export` of the job for `platform`; compile_here: also compile it on this machine (its
    own platform, no mesh) for XLA's memory analysis."""
    exported = jax_export.export(job.fn, platforms=[platform])(*job.args)
    text = exported.mlir_module()
    outputs = jax.eval_shape(job.fn, *job.args)
    memory = None
    if compile_here:
        stats = job.fn.trace(*job.args).lower().compile().memory_analysis()
        if stats is not None:
            memory = {name: int(getattr(stats, f"{name}_size_in_bytes")) for name in ("argument", "output", "temp")}
    leaves = jax.tree.leaves(job.args)
    used = device_bytes([leaves[i] for i in sorted(exported.module_kept_var_idx)])
    return Lowered(job.name, platform, dict(job.kernels), len(exported.mlir_module_serialized), count_ops(text),
                   largest_tensor(text), used, device_bytes(outputs), memory, exported,
                   fallback=fallback, note=job.note)


def lower_with_fallback(job: Job, xla_job: Callable[[], Job], platform: str, **kw) -> Lowered:
    """Lower `job`; if that fails and it uses a kernel, name the kernel and the error and lower
    `xla_job()` (the same job with XLA attention) instead."""
    try:
        return lower(job, platform, **kw)
    except Exception as e:  # noqa: BLE001 - any lowering failure of a kernel: report it, lower XLA instead
        if all(impl == "xla" for impl in job.kernels.values()):
            raise
        kernels = "; ".join(f"{KERNELS.get(impl, impl)} ['{impl}', {field}]"
                            for field, impl in job.kernels.items() if impl != "xla")
        return lower(xla_job(), platform, fallback=f"{kernels} cannot be lowered for {platform} from this install: "
                     f"{describe_error(e)}; lowered with XLA attention instead", **kw)


def describe_error(e: BaseException) -> str:
    """'Type: first line of the message (at the innermost file:line)'."""
    message = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    frames = traceback.extract_tb(e.__traceback__)
    where = ""
    if frames:
        path = frames[-1].filename
        where = f" at {path.split('site-packages/')[-1]}:{frames[-1].lineno}"
    return f"{type(e).__name__}{': ' + message if message else ''}{where}"


def host_platform() -> str:
    """This machine's platform in export's names ('gpu' is 'cuda')."""
    return {"gpu": "cuda"}.get(jax.default_backend(), jax.default_backend())


# ---- the generation jobs -------------------------------------------------------------------

def _abstract(tree):
    """Boxed abstract params (eval_shape) -> plain ShapeDtypeStructs."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nn.meta.unbox(tree))


def _shape_of(x) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))


def text_tokens(cfg: LanDiffConfig, latent_frames: int) -> int:
    """The LM's longest text condition: the T5 tokenizer's max length, or what fits max_len."""
    lm = cfg.lm
    kinds = layout.video_kinds(latent_frames, lm.iframe_tokens, lm.pframe_tokens, lm.segment_length)
    fixed = len(layout.prefix_kinds(1, len(lm.micro_keys))) - 1 + len(kinds)
    return min(LM_MAX_LENGTH, lm.max_len - fixed)


def generation_jobs(cfg: LanDiffConfig, *, prompts: int = 1, num_frames: int | None = None
                    ) -> list[Callable[[LanDiffConfig], Job]]:
    """A build(cfg with kernels chosen) -> Job per generation job, for `prompts` prompts of
    `num_frames` video frames (None: the most), one device."""
    t = cfg.latent_frames(num_frames)
    params = _abstract(pipeline.abstract_params(cfg))  # from the plain config: tracing init meets no kernel
    b = prompts
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), b))
    n = text_tokens(cfg, t)
    codes = jax.ShapeDtypeStruct((b, cfg.tokenizer.num_codes(t)), jnp.int32)
    latents = jax.ShapeDtypeStruct((b, t, cfg.dit.latent_height, cfg.dit.latent_width, cfg.dit.in_channels),
                                   jnp.float32)

    def lm_sample(c: LanDiffConfig) -> Job:
        options = jax.tree.map(_shape_of, lm_sampler.SampleOptions.create(guidance_scale=7.5))
        args = (params["lm"], jax.ShapeDtypeStruct((b, n, c.lm.text_dim), c.t5_lm.dtype),
                jax.ShapeDtypeStruct((b, n), jnp.bool_), jax.ShapeDtypeStruct((b, len(c.lm.micro_keys)), jnp.float32),
                keys, options, None)
        fn = jax.jit(functools.partial(lm_sampler.sample_loop, cfg=c.lm, num_frames=t, trace=False))
        return Job("lm_sample", fn, args, {"lm.decode_attention": c.lm.decode_attention},
                   note=f"{b} prompt(s) with guidance ({2 * b} rows), {n} text tokens, {t} semantic frames")

    def semantic_feature(c: LanDiffConfig) -> Job:
        fn = jax.jit(lambda p, codes: conditioner.semantic_feature(p, c.dit, c.tokenizer, codes, t))
        return Job("semantic_feature", fn, (params["diffusion"], codes), {"tokenizer.attention": c.tokenizer.attention})

    feature = jax.eval_shape(semantic_feature(xla_only(cfg)).fn, params["diffusion"], codes)
    context = jax.ShapeDtypeStruct((b, cfg.dit.text_length, cfg.dit.text_hidden_size), jnp.float32)
    steps = jax.tree.map(_shape_of, dit_sampler.step_inputs(step_schedule(cfg.sampler)))
    table = _shape_of(denoiser_sigma_table(cfg.sampler.denoiser_num_idx, cfg.sampler.denoiser_shift_scale))
    key = jax.eval_shape(lambda: jax.random.key(0))

    def dit_sample(c: LanDiffConfig) -> Job:
        fn = jax.jit(functools.partial(dit_sampler.sample_loop, cfg=c.dit))
        args = (params["diffusion"]["dit"], steps, latents, context, context, feature, table, key)
        return Job("dit_sample", fn, args, {"dit.attention": c.dit.attention},
                   note=f"{c.sampler.num_steps} steps, guidance batch {2 * b}, {c.dit.num_video_tokens(t)} video "
                        "tokens")

    def vae_decode(c: LanDiffConfig) -> Job:
        fn = jax.jit(lambda p, z: vae.decode_latents(p, c.vae, z))
        return Job("vae_decode", fn, (params["vae"], latents), {}, note=f"{c.video_frames(t)} video frames")

    return [lm_sample, semantic_feature, dit_sample, vae_decode]


def xla_only(cfg: LanDiffConfig) -> LanDiffConfig:
    """`cfg` with XLA attention everywhere (what `runtime` picks on a CPU)."""
    return runtime.configure(cfg, devices=[TARGETS["cpu"]])


def lower_generation(cfg: LanDiffConfig, platforms: Sequence[str], *, prompts: int = 1,
                     num_frames: int | None = None, compile_here: bool = False) -> list[Lowered]:
    """Every generation job of `cfg` (its dtypes as given) lowered for each platform, with the
    kernels `runtime` picks there (a job with the same kernels on two platforms is traced once).
    compile_here: also compile for this machine's own platform (memory analysis)."""
    results = []
    for build in generation_jobs(cfg, prompts=prompts, num_frames=num_frames):
        traced: dict = {}  # kernels -> Job: one trace per distinct kernel choice

        def xla_job(build=build, traced=traced):
            job = build(xla_only(cfg))
            return traced.setdefault(tuple(job.kernels.items()), job)

        for platform in platforms:
            job = build(runtime.configure(cfg, devices=[TARGETS[platform]]))
            job = traced.setdefault(tuple(job.kernels.items()), job)
            results.append(lower_with_fallback(job, xla_job, platform,
                                               compile_here=compile_here and platform == host_platform()))
    return results


# ---- the train steps -----------------------------------------------------------------------

def abstract_mesh(data: int, fsdp: int, tensor: int = 1) -> AbstractMesh:
    return AbstractMesh((data, fsdp, tensor), MESH_AXES)


@dataclasses.dataclass(frozen=True)
class TrainJob:
    job: Job
    state_bytes: Mapping[str, int]  # per device, per TrainState field


def train_job(name: str, config, mesh: AbstractMesh) -> TrainJob:
    """The train step of a TrainConfig as the trainer builds it, its state and a micro-batch as
    abstract arrays in their shardings on `mesh`. The micro-batch is the config's, raised to the
    next multiple of data × fsdp when it does not split over them (noted)."""
    from landiff_jax.train.optimizer import learning_rate_schedule, make_optimizer
    from landiff_jax.train.step import abstract_state, batch_shardings, make_train_step, state_shardings
    from landiff_jax.train.task import make_task

    task = make_task(config)
    optimizer = make_optimizer(config.optimizer, config.steps)
    ema = config.ema_decay is not None
    shardings = state_shardings(task, optimizer, mesh, ema)
    state = abstract_state(task, optimizer, config.seed, ema, shardings)
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    rows = -(-config.micro_batch_size // split) * split
    raised = f", raised from the config's {config.micro_batch_size}" if rows != config.micro_batch_size else ""
    note = (f"micro-batch {rows} ({rows // split} per data×fsdp shard{raised}); the module's shapes are global "
            "(before SPMD partitioning)")
    batch_sh = batch_shardings(task, mesh)
    batch = {k: jax.ShapeDtypeStruct((rows, *s.shape), s.dtype, sharding=batch_sh[k]) for k, s in task.example.items()}
    step = make_train_step(task, optimizer, learning_rate_schedule(config.optimizer, config.steps),
                           config.optimizer.accumulation_steps, config.ema_decay, shardings, mesh)
    # the task applies runtime's choice for this machine's devices: XLA here, as on a multi-device mesh
    kernels = {"train attention": runtime.choose(config.compute_dtype, 0).attention}
    state_bytes = {k: device_bytes(v) for k, v in state.as_dict().items()}
    return TrainJob(Job(name, step, (state, batch), kernels, note=note), state_bytes)


def check_platforms(platforms: Sequence[str]) -> list[str]:
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise ValueError(f"platforms must be among {PLATFORMS}, got {list(platforms)}")
    return list(dict.fromkeys(platforms))


# ---- reporting -----------------------------------------------------------------------------

def size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def describe(r: Lowered, state_bytes: Mapping[str, int] | None = None) -> list[str]:
    """The report lines of one lowered job."""
    kernels = ", ".join(f"{k}={v}" for k, v in r.kernels.items()) or "none"
    lines = [f"{r.platform:<5} {r.name:<22} StableHLO {size(r.stablehlo_bytes)}, {r.ops:,} ops; "
             f"largest array {size(r.largest[0])} {r.largest[1]}; attention: {kernels}"]
    memory = f"arguments {size(r.argument_bytes)}, outputs {size(r.output_bytes)}"
    if state_bytes:
        parts = ", ".join(f"{k} {size(v)}" for k, v in state_bytes.items() if v)
        memory = f"train state {size(sum(state_bytes.values()))} ({parts}); {memory} (state included)"
    if r.memory:
        memory += "; compiled here: " + ", ".join(f"{k} {size(v)}" for k, v in r.memory.items())
    lines.append(f"{'':<6}per device: {memory}")
    if r.note:
        lines.append(f"{'':<6}{r.note}")
    if r.fallback:
        lines.append(f"{'':<6}FALLBACK: {r.fallback}")
    return lines
