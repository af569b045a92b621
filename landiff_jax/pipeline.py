"""Text → semantic tokens → latents → video: LanDiff end to end.

    pipe = LanDiff.from_checkpoint("ckpts/landiff-jax", dtype="bfloat16")
    result = pipe.generate("A red fox walks through snow.", seed=42, steps=50)
    result.videos  # [b F H W 3] uint8; also result.codes [b N], result.latents [b t h w c]

Stages (each compiled once per shape): Flan-T5 encode → LM sampling (one jitted loop) →
T5-v1.1 encode → semantic conditioner (once per generation) → guided DiT sampling (one jitted
scan) → chunked VAE decode. Every argument is checked before any heavy compute.

Time to the first video: `from_checkpoint` restores each component straight into its devices'
shardings, and with `compile_for` compiles every stage from the weights' shapes in a thread
while they load (`LanDiff.compile`); the tools keep compiled code across runs
(`runtime.use_compilation_cache`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from landiff_jax import checkpoint, diffusion, lm, runtime, text, tokenizer, vae
from landiff_jax import progress as P
from landiff_jax.config import LanDiffConfig
from landiff_jax.diffusion import conditioner, sampler
from landiff_jax.nn.init import random_params
from landiff_jax.parallel import param_shardings
from landiff_jax.video_io import to_uint8

TEXT_COMPONENTS = ("t5_lm", "t5_dit")
JOBS = ("generate", "all")  # what a job reads: generation, or everything (encoding, training)


@dataclasses.dataclass(frozen=True)
class Component:
    """One entry of the converted checkpoint: its config inside LanDiffConfig, the shapes of the
    params a job reads (None: the job reads none), and whether a mesh shards it (else replicates;
    the LM as `runtime.lm_weights` decides)."""

    config: Callable[[LanDiffConfig], Any]
    abstract: Callable[[LanDiffConfig, str], Any]
    sharded: bool = False


COMPONENTS: dict[str, Component] = {
    "t5_lm": Component(lambda c: c.t5_lm, lambda c, job: text.abstract_params(c.t5_lm), sharded=True),
    "t5_dit": Component(lambda c: c.t5_dit, lambda c, job: text.abstract_params(c.t5_dit), sharded=True),
    "lm": Component(lambda c: c.lm, lambda c, job: lm.abstract_params(c.lm), sharded=True),
    # the standalone tokenizer encodes videos (training data); generation decodes with the DiT's copy
    "tokenizer": Component(lambda c: c.tokenizer,
                           lambda c, job: None if job == "generate" else tokenizer.abstract_params(c.tokenizer)),
    "diffusion": Component(lambda c: c.dit, lambda c, job: diffusion.abstract_params(
        c.dit, c.tokenizer, decode_only=job == "generate")),
    "vae": Component(lambda c: c.vae, lambda c, job: vae.abstract_params(c.vae, decode_only=job == "generate")),
}


@dataclasses.dataclass(frozen=True)
class GenerateOptions:
    """Defaults are the original CLI's (`landiff/infer_video.py`)."""

    seed: int = 42
    num_frames: int | None = None  # video frames (1 + 8k); None: the model's maximum (49 at full size)
    lm_guidance: float = 7.5
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    motion_score: float = 0.1
    steps: int | None = None  # diffusion steps; None: the config's (50)
    dit_guidance: float | None = None  # dynamic CFG scale; None: the config's (6)
    dit_guidance_exp: float | None = None  # dynamic CFG exponent; None: the config's (5)


@dataclasses.dataclass
class GenerateResult:
    videos: np.ndarray  # [b F H W 3] uint8 (`landiff_jax.write_mp4` saves one)
    codes: np.ndarray  # [b N] int32 semantic tokens (reusable as `generate(..., codes=)`)
    latents: np.ndarray  # [b t h w c] float32 sampler output
    finite: np.ndarray  # [b] bool: False where the decoded video held NaN/inf (its frames are then zeros)


def is_sharded(name: str, cfg: LanDiffConfig, mesh: Mesh | None, lm_placement: str | None = None) -> bool:
    """Whether component `name` is split over `mesh` (lm_placement: see `runtime.lm_weights`)."""
    if mesh is None or not COMPONENTS[name].sharded:
        return False
    return name != "lm" or runtime.lm_weights(cfg.lm, mesh.devices.size, lm_placement) == "sharded"


def component_shardings(cfg: LanDiffConfig, mesh: Mesh | None = None,
                        lm_placement: str | None = None) -> dict[str, Any]:
    """Where each component's generation params go: {component: tree of Shardings}; the
    default device without a mesh, else split by the logical-axis rules or replicated."""
    out = {}
    for name, tree in abstract_params(cfg).items():
        if is_sharded(name, cfg, mesh, lm_placement):
            out[name] = param_shardings(tree, mesh)
        else:
            where = NamedSharding(mesh, PartitionSpec()) if mesh is not None else SingleDeviceSharding(jax.devices()[0])
            out[name] = jax.tree.map(lambda _, w=where: w, nn.meta.unbox(tree))
    return out


def weight_bytes(cfg: LanDiffConfig, mesh: Mesh | None = None, lm_placement: str | None = None) -> int:
    """Bytes of the generation weights that one device holds (sharded components split over
    the mesh's devices, the others replicated)."""
    devices = mesh.devices.size if mesh is not None else 1
    total = 0
    for name, tree in abstract_params(cfg).items():
        size = sum(math.prod(a.shape) for a in jax.tree.leaves(tree))
        size *= jnp.dtype(COMPONENTS[name].config(cfg).param_dtype).itemsize
        total += -(-size // devices) if is_sharded(name, cfg, mesh, lm_placement) else size
    return total


def device_memory(device) -> int | None:
    """Bytes an accelerator can allocate, or the host's available memory for a CPU device
    (None when unknown)."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_memory(cfg: LanDiffConfig, mesh: Mesh | None = None, lm_placement: str | None = None) -> None:
    """Refuse, before anything is built, a system whose weights alone exceed a device's memory."""
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    need, have = weight_bytes(cfg, mesh, lm_placement), device_memory(device)
    if have is not None and need > have:
        dtype = jnp.dtype(cfg.dit.param_dtype).name
        advice = "bfloat16, " if dtype == "float32" else ""
        size = lambda n: f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"  # noqa: E731
        raise ValueError(f"too little memory: the weights alone need {size(need)} per device in {dtype}, "
                         f"{device.platform} device {device.id} has {size(have)}"
                         f"{' available' if device.platform == 'cpu' else ''}; use {advice}a mesh of more "
                         "devices, or a smaller config")


SEED_RANGE = (0, 2**32 - 1)


def check_options(cfg: LanDiffConfig, options: GenerateOptions) -> int:
    """Every option against the config, before any weight is read: the semantic frame count T."""
    numbers = {"lm_guidance": options.lm_guidance, "temperature": options.temperature, "top_p": options.top_p,
               "motion_score": options.motion_score, "dit_guidance": options.dit_guidance,
               "dit_guidance_exp": options.dit_guidance_exp}
    for name, value in numbers.items():
        if value is not None and not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    if not SEED_RANGE[0] <= options.seed <= SEED_RANGE[1]:
        raise ValueError(f"seed must be in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], got {options.seed}")
    if options.steps is not None and options.steps < 1:
        raise ValueError(f"steps must be >= 1, got {options.steps}")
    lm.SampleOptions.create(guidance_scale=options.lm_guidance, temperature=options.temperature,
                            top_k=options.top_k, top_p=options.top_p, greedy=options.greedy)
    return cfg.latent_frames(options.num_frames)


def check_codes(cfg: LanDiffConfig, codes, latent_frames: int, batch: int) -> np.ndarray:
    """Semantic tokens given instead of the LM's: integers [batch N] in the codebook."""
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
    want = (batch, cfg.tokenizer.num_codes(latent_frames))
    if codes.shape != want:
        raise ValueError(f"codes have shape {codes.shape}, expected {want} for {batch} prompt(s) and "
                         f"{latent_frames} semantic frames")
    if codes.min() < 0 or codes.max() >= cfg.tokenizer.codebook_size:
        raise ValueError(f"codes must lie in [0, {cfg.tokenizer.codebook_size}), "
                         f"got [{codes.min()}, {codes.max()}]")
    return codes.astype(np.int32)


def abstract_params(cfg: LanDiffConfig, job: str = "generate") -> dict[str, Any]:
    """Shapes (with logical axis names) of the params `job` reads, per component."""
    if job not in JOBS:
        raise ValueError(f"job must be one of {JOBS}, got {job!r}")
    trees = {name: component.abstract(cfg, job) for name, component in COMPONENTS.items()}
    return {name: tree for name, tree in trees.items() if tree is not None}


@dataclasses.dataclass(frozen=True)
class CompileFor:
    """What a coming `generate` call will run, for `LanDiff.compile`: its prompts and options,
    whether it gets a progress callback, and whether it is given codes (no LM stage)."""

    prompts: Sequence[str]
    options: GenerateOptions = GenerateOptions()
    progress: bool = True
    codes: bool = False


def _placeholder(info: jax.ShapeDtypeStruct):
    """Zeros like a compiled function's output `info` (`Compiled.out_info`), placed like it."""
    return jax.device_put(np.zeros(info.shape, info.dtype), info.sharding)


class LanDiff:
    """The whole system with its params on device; one instance serves many generate calls."""

    def __init__(self, cfg: LanDiffConfig, params: Mapping[str, Any] | Iterable[tuple[str, Any]],
                 tokenizers: dict[str, text.T5TextTokenizer], *, random_weights: bool = False,
                 mesh: Mesh | None = None, dit_attention: str | None = None, lm_placement: str | None = None):
        """params: {component: params} or (component, params) pairs, holding what generation reads
        (`abstract_params(cfg, 'generate')`), placed one at a time (`place`) so that a lazily
        loaded component leaves host memory before the next is read. The kernels are chosen here,
        once, for the devices (`runtime.configure`; `dit_attention` forces the DiT's). `mesh` (see
        `parallel.make_mesh`): the text encoders' weights are sharded by the logical-axis rules;
        the LM's are replicated with its guidance rows split over devices, or sharded, as
        `runtime.lm_weights` decides (`lm_placement` forces it); the other stages' weights are
        replicated, and the guided DiT runs CFG- and sequence-parallel by the mesh's shape
        (`diffusion.sampler`)."""
        cfg = runtime.configure(cfg.check(), mesh=mesh, dit_attention=dit_attention, lm_placement=lm_placement)
        self.cfg = cfg
        self.tokenizers = tokenizers
        self._progress = P.Relay()  # the samplers' fixed static callback (see landiff_jax.progress)
        self.random_weights = random_weights
        self.mesh = mesh
        self.restore_seconds: float | None = None  # from_checkpoint: the time its restores took
        self.lm_placement = runtime.lm_weights(cfg.lm, mesh.devices.size if mesh is not None else 1, lm_placement)
        self.shardings = component_shardings(cfg, mesh, self.lm_placement)
        self.params = {}
        for name, tree in params.items() if isinstance(params, Mapping) else params:
            self.place(name, tree)

    def place(self, name: str, tree) -> None:
        """Component `name`'s params, in its param dtype, onto their devices (`self.shardings`)."""
        tree = jax.tree.map(lambda a, d=COMPONENTS[name].config(self.cfg).param_dtype: jnp.asarray(a, d), tree)
        self.params[name] = jax.device_put(tree, self.shardings[name])

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, directory: str | Path, dtype: str | None = None, mesh: Mesh | None = None,
                        dit_attention: str | None = None, verify: str = "cheap", lm_placement: str | None = None,
                        compile_for: CompileFor | None = None) -> "LanDiff":
        """A converted checkpoint (`tools/convert.py`), computed in `dtype` (default: as stored),
        reading only the parameters generation uses, each restored straight into its shardings
        and dtype; dit_attention, lm_placement: see `__init__`; verify: the checksum level of
        each component (`checkpoint.load_component`). compile_for: compile the stages of that
        coming `generate` call in a thread while the weights load (`compile`)."""
        cfg = checkpoint.load_config(directory, dtype)
        check_memory(cfg, mesh, lm_placement)
        tokenizers = {c: checkpoint.text_tokenizer(directory, c) for c in TEXT_COMPONENTS}
        pipe = cls(cfg, {}, tokenizers, mesh=mesh, dit_attention=dit_attention, lm_placement=lm_placement)
        stop = threading.Event()  # a failed load stops the compiling after its current stage
        compiling = threading.Thread(target=pipe._compile_or_warn, args=(compile_for, stop))
        if compile_for is not None:
            compiling.start()
        start = time.perf_counter()
        try:
            for name, tree in abstract_params(pipe.cfg, "generate").items():
                dtype_ = COMPONENTS[name].config(pipe.cfg).param_dtype
                pipe.place(name, checkpoint.load_component(directory, name, tree, verify=verify,
                                                           shardings=pipe.shardings[name], dtype=dtype_))
            pipe.restore_seconds = time.perf_counter() - start
        except BaseException:
            stop.set()
            raise
        finally:
            if compiling.is_alive():
                compiling.join()
        return pipe

    @classmethod
    def random(cls, cfg: LanDiffConfig, seed: int = 0, mesh: Mesh | None = None,
               dit_attention: str | None = None, lm_placement: str | None = None) -> "LanDiff":
        """RANDOM weights and byte-level text ids: shows the code path, the video is noise."""
        check_memory(cfg, mesh, lm_placement)
        params = {name: random_params(tree, seed + i) for i, (name, tree) in enumerate(abstract_params(cfg).items())}
        return cls(cfg, params, {c: text.ByteTokenizer() for c in TEXT_COMPONENTS}, random_weights=True, mesh=mesh,
                   dit_attention=dit_attention, lm_placement=lm_placement)

    # ---- compiling ahead ----------------------------------------------------------------
    def compile(self, plan: CompileFor, stop: threading.Event | None = None) -> None:
        """Compile every stage that `generate(plan.prompts, plan.options)` runs, from the weights'
        shapes and shardings alone (no weight is needed: it runs while they load), so that the
        call itself compiles nothing. Each stage is called exactly as `generate` calls it, with
        zeros placed like the previous stage's output (a call with other shapes or placements
        compiles as usual). stop: once set, no further stage is compiled."""
        stopped = lambda: stop is not None and stop.is_set()  # noqa: E731
        prompts, options = self.check_prompts(plan.prompts), plan.options
        t = check_options(self.cfg, options)
        cfg, relay, b = self.cfg, self._progress if plan.progress else None, len(prompts)
        params = {name: jax.tree.map(
            lambda a, s, d=COMPONENTS[name].config(cfg).param_dtype: jax.ShapeDtypeStruct(a.shape, d, sharding=s),
            nn.meta.unbox(tree), self.shardings[name]) for name, tree in abstract_params(cfg).items()}
        if not plan.codes:
            ids, mask = self.tokenizers["t5_lm"].encode_lm(prompts)
            hidden = _placeholder(text.encode_ids.lower(params["t5_lm"], cfg.t5_lm, ids, mask).compile().out_info)
            if stopped():
                return
            self._lm_sample(params["lm"], hidden, mask.astype(bool), t, options, progress=relay, compile_only=True)
        codes = jnp.asarray(np.zeros((b, cfg.tokenizer.num_codes(t)), np.int32))
        feature = conditioner.semantic_feature.lower(cfg.dit, cfg.tokenizer, params["diffusion"], codes, t,
                                                     collect=False).compile()
        ids = self.tokenizers["t5_dit"].encode_diffusion(prompts, cfg.dit.text_length)
        if stopped():
            return
        context = text.encode_ids.lower(params["t5_dit"], cfg.t5_dit, ids, None).compile()
        context, uncond = _context_pair(_placeholder(context.out_info))
        if stopped():
            return
        loop = self._dit_sample(params["diffusion"]["dit"], context, uncond, _placeholder(feature.out_info), options,
                                progress=relay, compile_only=True)
        latents = _placeholder(loop.out_info[0])  # (samples, per-step outputs: None)
        if stopped():
            return
        video = vae.decode_latents(params["vae"], cfg.vae, latents, compile_only=True)
        vae.to_unit(_placeholder(video.out_info))  # (eager: its few small ops)

    def _compile_or_warn(self, plan: CompileFor, stop: threading.Event) -> None:
        """`compile`, for a thread: a failure only warns (generate then compiles, and reports it)."""
        try:
            self.compile(plan, stop)
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"compiling ahead failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                          "generate compiles instead", stacklevel=2)

    # ---- checks -------------------------------------------------------------------------
    def check_prompts(self, prompts: str | Sequence[str]) -> list[str]:
        """The one check of the prompts (the pipeline's edge; the stages below take them as given):
        one prompt or a non-empty list of them."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            raise ValueError("give a prompt or a non-empty list of prompts")
        empty = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
        if empty:
            raise ValueError(f"empty prompt(s) at position(s) {empty}")
        return list(prompts)

    def check_codes(self, codes, latent_frames: int, batch: int) -> np.ndarray:
        return check_codes(self.cfg, codes, latent_frames, batch)

    # ---- stages -------------------------------------------------------------------------
    def sample_codes(self, prompts: Sequence[str], latent_frames: int, options: GenerateOptions, *,
                     trace: bool = False, progress: P.Callback | None = None) -> lm.SampleOutput:
        """Flan-T5 → LM sampling: semantic tokens [b N] (I-frame codes, then P-frame codes)."""
        hidden, mask = text.encode_for_lm(self.tokenizers["t5_lm"], self.params["t5_lm"], self.cfg.t5_lm, prompts)
        return self._lm_sample(self.params["lm"], hidden, mask, latent_frames, options, trace=trace, progress=progress)

    def _lm_sample(self, params, hidden, mask, latent_frames: int, options: GenerateOptions, **kw):
        """The LM sampler's call (`sample_codes`, `compile`); on a mesh per device when its
        weights are replicated."""
        sample_options = lm.SampleOptions.create(guidance_scale=options.lm_guidance, temperature=options.temperature,
                                                 top_k=options.top_k, top_p=options.top_p, greedy=options.greedy)
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(options.seed), i))(jnp.arange(mask.shape[0]))
        mesh = self.mesh if self.lm_placement == "replicated" else None
        return lm.sample(params, self.cfg.lm, hidden, mask, num_frames=latent_frames, motion_score=options.motion_score,
                         options=sample_options, rng=keys, mesh=mesh, **kw)

    def text_context(self, prompts: Sequence[str]):
        """T5-v1.1 context [b L D] (right-padded, no mask) and the unconditional zeros."""
        return _context_pair(text.encode_for_diffusion(self.tokenizers["t5_dit"], self.params["t5_dit"],
                                                       self.cfg.t5_dit, prompts, self.cfg.dit.text_length))

    def semantic_feature(self, codes, latent_frames: int, *, collect: bool = False):
        """Semantic tokens → the control branch's feature [b t H W c], once per generation."""
        return conditioner.semantic_feature(self.cfg.dit, self.cfg.tokenizer, self.params["diffusion"],
                                            jnp.asarray(codes), latent_frames, collect=collect)

    def sampler_config(self, options: GenerateOptions):
        s = self.cfg.sampler
        replace = {k: v for k, v in dict(num_steps=options.steps, cfg_num_steps=options.steps,
                                         cfg_scale=options.dit_guidance, cfg_exp=options.dit_guidance_exp).items()
                   if v is not None}
        return dataclasses.replace(s, **replace)

    def sample_latents(self, context, uncond_context, feature, options: GenerateOptions, *, init_noise=None,
                       step_noise=None, trajectory: bool = False, progress: P.Callback | None = None):
        """Guided DPM++(2M) SDE sampling (one jitted scan): latents [b t h w c] float32."""
        return self._dit_sample(self.params["diffusion"]["dit"], context, uncond_context, feature, options,
                                init_noise=init_noise, step_noise=step_noise, trajectory=trajectory, progress=progress)

    def _dit_sample(self, params, context, uncond_context, feature, options: GenerateOptions, *, init_noise=None,
                    **kw):
        """The DiT sampler's call (`sample_latents`, `compile`)."""
        key = None if init_noise is not None else jax.random.fold_in(jax.random.key(options.seed), 1 << 20)
        return sampler.sample(self.cfg.dit, self.sampler_config(options), params, context, uncond_context, feature,
                              key=key, init_noise=init_noise, mesh=self.mesh, **kw)

    def decode(self, latents):
        """Chunked VAE decode → video [b F H W 3] in [0, 1]."""
        return vae.to_unit(vae.decode_latents(self.params["vae"], self.cfg.vae, latents))

    def generate(self, prompts: str | Sequence[str], options: GenerateOptions | None = None, *, codes=None,
                 progress: P.Callback | None = None, **settings) -> GenerateResult:
        """The whole job for one prompt or a list of them.

        Settings are `GenerateOptions` fields, given as `options` or as keywords (seed=,
        num_frames=, steps=, lm_guidance=, dit_guidance=, ...; keywords override `options`).
        `codes` [b N] skips the LM (e.g. `result.codes` of an earlier run). `progress`: called
        with `landiff_jax.progress.Progress` events (stages, compile times, LM tokens and
        diffusion steps from inside the compiled loops); e.g. `print` or `progress.Display()`.
        """
        try:
            options = dataclasses.replace(options or GenerateOptions(), **settings)
        except TypeError:
            fields = sorted(f.name for f in dataclasses.fields(GenerateOptions))
            raise ValueError(f"unknown setting(s) {sorted(set(settings) - set(fields))}; "
                             f"the settings are {', '.join(fields)}") from None
        prompts = self.check_prompts(prompts)
        t = check_options(self.cfg, options)
        if codes is not None:
            codes = self.check_codes(codes, t, len(prompts))
        # the loops take the pipeline's relay (a fixed static argument) rather than `progress`
        relay = self._progress if progress is not None else None
        self._progress.target = progress
        report = progress or (lambda event: None)
        try:
            if codes is None:
                with _stage(report, "LM: semantic tokens"):
                    codes = np.asarray(self.sample_codes(prompts, t, options, progress=relay).codes)
            with _stage(report, "diffusion: text context + semantic feature"):
                context, uncond = self.text_context(prompts)
                feature = jax.block_until_ready(self.semantic_feature(codes, t))
            with _stage(report, "diffusion: guided steps"):
                latents = jax.block_until_ready(self.sample_latents(context, uncond, feature, options, progress=relay))
            with _stage(report, "VAE: decode"):
                video = np.asarray(self.decode(latents))
        finally:
            self._progress.target = None
        finite = np.isfinite(video).reshape(len(video), -1).all(axis=1)
        videos = np.stack([to_uint8(v) if ok else np.zeros(v.shape, np.uint8) for v, ok in zip(video, finite)])
        return GenerateResult(videos=videos, codes=np.asarray(codes, np.int32), latents=np.asarray(latents),
                              finite=finite)


def _context_pair(context):
    """The T5-v1.1 context in float32 and the unconditional zeros."""
    context = context.astype(jnp.float32)
    return context, jnp.zeros_like(context)


@contextlib.contextmanager
def _stage(progress: P.Callback, name: str):
    progress(P.Progress(name, "start"))
    start = time.perf_counter()
    yield
    progress(P.Progress(name, "done", seconds=time.perf_counter() - start))
