"""Text → semantic tokens → latents → video: LanDiff end to end.

    pipe = LanDiff.from_checkpoint("ckpts/landiff-jax", dtype="bfloat16")
    result = pipe.generate("A red fox walks through snow.", seed=42, steps=50)
    result.videos  # [b F H W 3] uint8; also result.codes [b N], result.latents [b t h w c]
    for chunk in pipe.generate_stream("A red fox ...", num_frames=193):  # long videos, chunk by chunk
        chunk.frames  # [b f H W 3] uint8, the frames this chunk adds

Stages (each compiled once per shape): Flan-T5 encode → LM sampling (one jitted loop) →
T5-v1.1 encode → semantic conditioner (once per generation) → guided DiT sampling (one jitted
scan) → chunked VAE decode. Every argument is checked before any heavy compute.

Long videos (more latent frames than the DiT's C, one LM group) are streamed: the LM writes the
original's multi-group sequence one group at a time (`lm.GroupStream`), the DiT generates
windows of C latent frames, each after the first keeping the previous one's last P frames as a
clean prefix (`SamplerConfig.stream_prefix_frames`), with the semantic features of the window's
frames (each group decoded by the tokenizer once), and the VAE decodes the new latent frames
with the causal cache carried over (`vae.LatentStream`). Every chunk has the same shapes: one
compiled function per stage, and memory that does not grow with the length.

Time to the first video: `from_checkpoint` restores the components concurrently, each straight
into its devices' shardings, and with `compile_for` compiles every stage of a one-chunk video
from the weights' shapes in a thread while they load (`LanDiff.compile`); the tools keep
compiled code across runs (`runtime.use_compilation_cache`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from landiff_jax import checkpoint, diffusion, lm, runtime, text, tokenizer, vae
from landiff_jax import progress as P
from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError
from landiff_jax.diffusion import conditioner, sampler
from landiff_jax.diffusion.config import SamplerConfig
from landiff_jax.diffusion.schedule import step_schedule
from landiff_jax.nn.init import random_params
from landiff_jax.parallel import param_shardings
from landiff_jax.video_io import to_uint8

TEXT_COMPONENTS = ("t5_lm", "t5_dit")
# what a job reads: generation; reconstruction (generation from given codes, without the LM side, plus the
# standalone tokenizer with Theia to encode videos); or everything but Theia (encoding features, training)
JOBS = ("generate", "reconstruct", "all")
LM_SIDE = ("t5_lm", "lm")  # what reconstruction does not read


@dataclasses.dataclass(frozen=True)
class Component:
    """One entry of the converted checkpoint: its config inside LanDiffConfig, the shapes of the
    params a job reads (None: the job reads none), and whether a mesh shards it (else replicates;
    the LM as `runtime.lm_weights` decides)."""

    config: Callable[[LanDiffConfig], Any]
    abstract: Callable[[LanDiffConfig, str], Any]
    sharded: bool = False


COMPONENTS: dict[str, Component] = {
    "t5_lm": Component(lambda c: c.t5_lm, lambda c, job: None if job == "reconstruct" else
                       text.abstract_params(c.t5_lm), sharded=True),
    "t5_dit": Component(lambda c: c.t5_dit, lambda c, job: text.abstract_params(c.t5_dit), sharded=True),
    "lm": Component(lambda c: c.lm, lambda c, job: None if job == "reconstruct" else lm.abstract_params(c.lm),
                    sharded=True),
    # the standalone tokenizer encodes videos (training data); generation decodes with the DiT's copy
    "tokenizer": Component(lambda c: c.tokenizer, lambda c, job: None if job == "generate" else
                           tokenizer.abstract_params(c.tokenizer, theia=job == "reconstruct")),
    "diffusion": Component(lambda c: c.dit, lambda c, job: diffusion.abstract_params(
        c.dit, c.tokenizer, decode_only=job != "all")),
    "vae": Component(lambda c: c.vae, lambda c, job: vae.abstract_params(c.vae, decode_only=job != "all")),
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
    # long videos: LM groups its KV cache holds (a sliding window); None: the whole sequence while
    # it fits the LM's max_len (the original's), else as many groups as fit
    lm_window: int | None = None
    # the LM-side prompt tokens are left-padded (masked) to at least this many, so that prompts of
    # any length up to it share one compiled LM (a server's requests); 0: to the longest prompt
    min_text_tokens: int = 0


def config_defaults(cfg: LanDiffConfig) -> dict[str, Any]:
    """The values of the settings that `GenerateOptions` leaves to the config (None)."""
    s = cfg.sampler
    return dict(num_frames=cfg.video_frames(cfg.max_latent_frames), steps=s.num_steps, dit_guidance=s.cfg_scale,
                dit_guidance_exp=s.cfg_exp)


@dataclasses.dataclass
class GenerateResult:
    videos: np.ndarray  # [b F H W 3] uint8 (`landiff_jax.write_mp4` saves one)
    codes: np.ndarray  # [b N] int32 semantic tokens (reusable as `generate(..., codes=)`)
    latents: np.ndarray  # [b t h w c] float32 sampler output
    finite: np.ndarray  # [b] bool: False where the decoded video held NaN/inf (its frames are then zeros)


@dataclasses.dataclass
class Chunk:
    """What `LanDiff.generate_stream` yields: the part of the b videos one chunk adds."""

    index: int
    first_frame: int  # the video frame number of frames[:, 0]
    frames: np.ndarray  # [b f H W 3] uint8 (zeros where not finite)
    latents: np.ndarray  # [b n h w c] float32: the latent frames this chunk generated
    codes: np.ndarray  # [b m] int32: the semantic tokens the LM wrote for this chunk (m may be 0)
    finite: np.ndarray  # [b] bool: False where this chunk's frames held NaN/inf


def is_sharded(name: str, cfg: LanDiffConfig, mesh: Mesh | None, lm_placement: str | None = None) -> bool:
    """Whether component `name` is split over `mesh` (lm_placement: see `runtime.lm_weights`)."""
    if mesh is None or not COMPONENTS[name].sharded:
        return False
    return name != "lm" or runtime.lm_weights(cfg.lm, mesh.devices.size, lm_placement) == "sharded"


def component_shardings(cfg: LanDiffConfig, mesh: Mesh | None = None, lm_placement: str | None = None,
                        job: str = "generate") -> dict[str, Any]:
    """Where each component's params that `job` reads go: {component: tree of Shardings}; the
    default device without a mesh, else split by the logical-axis rules or replicated."""
    out = {}
    for name, tree in abstract_params(cfg, job).items():
        if is_sharded(name, cfg, mesh, lm_placement):
            out[name] = param_shardings(tree, mesh)
        else:
            where = NamedSharding(mesh, PartitionSpec()) if mesh is not None else SingleDeviceSharding(jax.devices()[0])
            out[name] = jax.tree.map(lambda _, w=where: w, nn.meta.unbox(tree))
    return out


def weight_bytes(cfg: LanDiffConfig, mesh: Mesh | None = None, job: str = "generate",
                 lm_placement: str | None = None) -> int:
    """Bytes of the weights `job` reads that one device holds (sharded components split over
    the mesh's devices, the others replicated)."""
    devices = mesh.devices.size if mesh is not None else 1
    total = 0
    for name, tree in abstract_params(cfg, job).items():
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


def check_memory(cfg: LanDiffConfig, mesh: Mesh | None = None, job: str = "generate",
                 lm_placement: str | None = None) -> None:
    """Refuse, before anything is built, a system whose weights alone exceed a device's memory."""
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    need, have = weight_bytes(cfg, mesh, job, lm_placement), device_memory(device)
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
    for name in ("lm_guidance", "dit_guidance"):  # 0 turns guidance off
        if numbers[name] is not None and numbers[name] < 0:
            raise ValueError(f"{name} must be >= 0 (0: no guidance), got {numbers[name]:g}")
    if not SEED_RANGE[0] <= options.seed <= SEED_RANGE[1]:
        raise ValueError(f"seed must be in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], got {options.seed}")
    if options.lm_window is not None and options.lm_window < 1:
        raise ValueError(f"lm_window must be >= 1 (LM groups), got {options.lm_window}")
    if options.top_k is not None and options.top_k > cfg.lm.vocab_size:
        raise ValueError(f"top_k must be <= {cfg.lm.vocab_size} (the LM's vocabulary), got {options.top_k}")
    lm_options(options)
    check_sampler(sampler_config(cfg, options))
    return cfg.latent_frames(options.num_frames, streaming=True)


def sampler_config(cfg: LanDiffConfig, options: GenerateOptions) -> SamplerConfig:
    """The config's sampler with the options' steps and dynamic CFG (those not None)."""
    replace = {k: v for k, v in dict(num_steps=options.steps, cfg_num_steps=options.steps,
                                     cfg_scale=options.dit_guidance, cfg_exp=options.dit_guidance_exp).items()
               if v is not None}
    return dataclasses.replace(cfg.sampler, **replace)


def check_sampler(s: SamplerConfig) -> None:
    """The sampler's schedule can be computed and is finite in float32, named by generate's options:
    one step has no zero-SNR schedule (its rescale divides by zero), and the dynamic CFG raises a
    negative step fraction to the exponent (a fraction gives a complex number, a large one overflows)."""
    if not 2 <= s.num_steps < s.num_timesteps:
        raise ValueError(f"steps must be in [2, {s.num_timesteps - 1}], got {s.num_steps}")
    if s.cfg_exp != int(s.cfg_exp):
        raise ValueError(f"dit_guidance_exp must be a whole number (the dynamic CFG raises a negative step fraction "
                         f"to it), got {s.cfg_exp:g}")
    try:
        scales = step_schedule(s).cfg_scale
    except (OverflowError, ZeroDivisionError):
        raise ValueError(f"dit_guidance_exp {s.cfg_exp:g} makes the dynamic CFG scale overflow over {s.num_steps} "
                         f"steps; use a smaller one") from None
    with np.errstate(over="ignore"):
        if not np.isfinite(scales.astype(np.float32)).all():
            raise ValueError(f"dit_guidance {s.cfg_scale:g} with dit_guidance_exp {s.cfg_exp:g} gives a guidance "
                             f"scale beyond float32; use a smaller one")


def lm_options(options: GenerateOptions) -> lm.SampleOptions:
    return lm.SampleOptions.create(guidance_scale=options.lm_guidance, temperature=options.temperature,
                                   top_k=options.top_k, top_p=options.top_p, greedy=options.greedy)


def num_codes(cfg: LanDiffConfig, latent_frames: int) -> int:
    """Semantic tokens of T frames: one group's, or the LM's groups of a long video."""
    return lm.num_codes(latent_frames, cfg.lm.iframe_tokens, cfg.lm.pframe_tokens, cfg.lm.segment_length)


def check_codes(cfg: LanDiffConfig, codes, latent_frames: int, batch: int) -> np.ndarray:
    """Semantic tokens given instead of the LM's: integers [batch N] in the codebook."""
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
    want = (batch, num_codes(cfg, latent_frames))
    if codes.shape != want:
        raise ValueError(f"codes have shape {codes.shape}, expected {want} for {batch} prompt(s) and "
                         f"{latent_frames} semantic frames")
    if codes.min() < 0 or codes.max() >= cfg.tokenizer.codebook_size:
        raise ValueError(f"codes must lie in [0, {cfg.tokenizer.codebook_size}), "
                         f"got [{codes.min()}, {codes.max()}]")
    return codes.astype(np.int32)


def abstract_params(cfg: LanDiffConfig, job: str = "generate") -> dict[str, Any]:
    """Shapes (with logical axis names) of the params `job` reads, per component. Traced once
    per config and job (a few seconds of tracing each model's init; building a pipeline asks
    three times): the trees are shared, the dict is the caller's."""
    if job not in JOBS:
        raise ValueError(f"job must be one of {JOBS}, got {job!r}")
    return dict(_abstract_params(cfg, job))


@functools.lru_cache(maxsize=8)
def _abstract_params(cfg: LanDiffConfig, job: str) -> dict[str, Any]:
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


def _ignore(event: P.Progress) -> None:
    """A progress callback that drops every event."""


def _placeholder(info: jax.ShapeDtypeStruct):
    """Zeros like a compiled function's output `info` (`Compiled.out_info`), placed like it."""
    return jax.device_put(np.zeros(info.shape, info.dtype), info.sharding)


class LanDiff:
    """The whole system with its params on device; one instance serves many generate calls."""

    def __init__(self, cfg: LanDiffConfig, params: Mapping[str, Any] | Iterable[tuple[str, Any]],
                 tokenizers: dict[str, text.T5TextTokenizer], *, random_weights: bool = False,
                 mesh: Mesh | None = None, dit_attention: str | None = None, lm_placement: str | None = None,
                 job: str = "generate"):
        """params: {component: params} or (component, params) pairs, holding what `job` reads
        (`abstract_params(cfg, job)`, see JOBS), placed one at a time (`place`) so that a lazily
        loaded component leaves host memory before the next is read. The kernels are chosen here,
        once, for the devices (`runtime.configure`; `dit_attention` forces the DiT's). `mesh` (see
        `parallel.make_mesh`): the text encoders' weights are sharded by the logical-axis rules;
        the LM's are replicated with its guidance rows split over devices, or sharded, as
        `runtime.lm_weights` decides (`lm_placement` forces it); the other stages' weights are
        replicated, and the guided DiT runs CFG- and sequence-parallel by the mesh's shape
        (`diffusion.sampler`), long videos included."""
        cfg = runtime.configure(cfg.check(), mesh=mesh, dit_attention=dit_attention, lm_placement=lm_placement)
        self.cfg = cfg
        self.tokenizers = tokenizers
        self.random_weights = random_weights
        self.mesh = mesh
        self.restore_seconds: float | None = None  # from_checkpoint: the wall time of its restores,
        self.checks_seconds: float | None = None  # of what precedes them (config, tokenizers, stored shapes)
        self.compile_seconds: float | None = None  # and of compiling ahead beside them (`compile_for`)
        self.lm_placement = runtime.lm_weights(cfg.lm, mesh.devices.size if mesh is not None else 1, lm_placement)
        self.shardings = component_shardings(cfg, mesh, self.lm_placement, job)
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
                        compile_for: CompileFor | None = None, job: str = "generate") -> "LanDiff":
        """A converted checkpoint (`tools/convert.py`), computed in `dtype` (default: as stored),
        reading only the parameters `job` uses (see JOBS), the components restored concurrently
        (`checkpoint.load_components`; `restore_seconds`: the wall time of them all), each straight
        into its shardings and dtype; dit_attention, lm_placement: see `__init__`; verify: the checksum
        level of each component (`checkpoint.load_component`). compile_for: compile the stages of
        that coming `generate` call in a thread while the weights load (`compile`). The start-up's
        parts are timed: `checks_seconds`, `restore_seconds`, `compile_seconds`."""
        begin = time.perf_counter()
        cfg = checkpoint.load_config(directory, dtype)
        try:
            check_memory(cfg, mesh, job, lm_placement)
        except ArithmeticError as e:  # a size of 0 where a model divides by it: a damaged config
            raise CheckpointError(f"{Path(directory) / checkpoint.CONFIG_FILE}: its sizes describe no model "
                                  f"({e}); {checkpoint.RECONVERT}") from e
        tokenizers = {c: checkpoint.text_tokenizer(directory, c) for c in TEXT_COMPONENTS}
        pipe = cls(cfg, {}, tokenizers, mesh=mesh, dit_attention=dit_attention, lm_placement=lm_placement, job=job)
        trees = abstract_params(pipe.cfg, job)
        for name, tree in trees.items():  # metadata only, before compiling starts: a mismatch is found at once
            checkpoint.check_stored(directory, name, tree)
        stop = threading.Event()  # a failed load stops the compiling after its current stage
        compiling = threading.Thread(target=pipe._compile_or_warn, args=(compile_for, stop))
        if compile_for is not None:
            compiling.start()
        requests = {name: dict(abstract=tree, verify=verify, shardings=pipe.shardings[name],
                               dtype=COMPONENTS[name].config(pipe.cfg).param_dtype) for name, tree in trees.items()}
        start = time.perf_counter()
        pipe.checks_seconds = start - begin
        try:
            for name, tree in checkpoint.load_components(directory, requests, failed=stop).items():
                pipe.place(name, tree)
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
               dit_attention: str | None = None, lm_placement: str | None = None,
               job: str = "generate") -> "LanDiff":
        """RANDOM weights of what `job` reads (component i of COMPONENTS drawn from seed + i, as
        `prepare.load_frozen_models` draws them) and byte-level text ids: shows the code path, the
        video is noise."""
        check_memory(cfg, mesh, job, lm_placement)
        order = list(COMPONENTS)
        params = {name: random_params(tree, seed + order.index(name))
                  for name, tree in abstract_params(cfg, job).items()}
        return cls(cfg, params, {c: text.ByteTokenizer() for c in TEXT_COMPONENTS}, random_weights=True, mesh=mesh,
                   dit_attention=dit_attention, lm_placement=lm_placement, job=job)

    # ---- compiling ahead ----------------------------------------------------------------
    def compile(self, plan: CompileFor, stop: threading.Event | None = None) -> None:
        """Compile every stage that `generate(plan.prompts, plan.options)` runs, from the weights'
        shapes and shardings alone (no weight is needed: it runs while they load), so that the
        call itself compiles nothing. Each stage is called exactly as `generate` calls it, with
        zeros placed like the previous stage's output (a call with other shapes or placements
        compiles as usual). Videos of one chunk only: a streamed one compiles as its chunks run.
        stop: once set, no further stage is compiled."""
        stopped = lambda: stop is not None and stop.is_set()  # noqa: E731
        prompts, options = self.check_prompts(plan.prompts), plan.options
        t = check_options(self.cfg, options)
        cfg, b = self.cfg, len(prompts)
        loops = _ignore if plan.progress else None  # with progress the loops run in blocks: compile those
        if t > cfg.max_latent_frames:
            raise ValueError(f"compiling ahead covers videos of one chunk (up to "
                             f"{cfg.video_frames(cfg.max_latent_frames)} frames), not {cfg.video_frames(t)}")
        if not (plan.codes or set(LM_SIDE) <= set(self.shardings)):
            raise ValueError("this pipeline holds no LM (built for the 'reconstruct' job): plan with codes")
        params = {name: jax.tree.map(
            lambda a, s, d=COMPONENTS[name].config(cfg).param_dtype: jax.ShapeDtypeStruct(a.shape, d, sharding=s),
            nn.meta.unbox(tree), self.shardings[name]) for name, tree in abstract_params(cfg).items()
            if name in self.shardings}
        if not plan.codes:
            ids, mask = self.tokenizers["t5_lm"].encode_lm(prompts, min_length=options.min_text_tokens)
            hidden = _placeholder(text.encode_ids.lower(params["t5_lm"], cfg.t5_lm, ids, mask).compile().out_info)
            if stopped():
                return
            self._lm_sample(params["lm"], hidden, mask.astype(bool), t, options, progress=loops, compile_only=True)
        codes = jnp.asarray(np.zeros((b, num_codes(cfg, t)), np.int32))
        feature = conditioner.semantic_feature.lower(params["diffusion"], cfg.dit, cfg.tokenizer, codes, t,
                                                     collect=False).compile()
        ids = self.tokenizers["t5_dit"].encode_diffusion(prompts, cfg.dit.text_length)
        if stopped():
            return
        context = text.encode_ids.lower(params["t5_dit"], cfg.t5_dit, ids, None).compile()
        context, uncond = _context_pair(_placeholder(context.out_info))
        if stopped():
            return
        latents = _placeholder(self._dit_sample(params["diffusion"]["dit"], context, uncond,
                                                _placeholder(feature.out_info), options, progress=loops,
                                                compile_only=True))
        if stopped():
            return
        video = vae.decode_latents(params["vae"], cfg.vae, latents, compile_only=True)
        vae.to_unit(_placeholder(video.out_info))  # (eager: its few small ops)

    def _compile_or_warn(self, plan: CompileFor, stop: threading.Event) -> None:
        """`compile`, for a thread: a failure only warns (generate then compiles, and reports it)."""
        start = time.perf_counter()
        try:
            self.compile(plan, stop)
            self.compile_seconds = time.perf_counter() - start
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
        hidden, mask = text.encode_for_lm(self.tokenizers["t5_lm"], self.params["t5_lm"], self.cfg.t5_lm, prompts,
                                          min_length=options.min_text_tokens)
        return self._lm_sample(self.params["lm"], hidden, mask, latent_frames, options, trace=trace, progress=progress)

    def _lm_sample(self, params, hidden, mask, latent_frames: int, options: GenerateOptions, **kw):
        """The LM sampler's call (`sample_codes`, `compile`)."""
        return lm.sample(params, self.cfg.lm, hidden, mask, num_frames=latent_frames, motion_score=options.motion_score,
                         options=lm_options(options), rng=_lm_keys(options, mask.shape[0]), mesh=self._lm_mesh, **kw)

    @property
    def _lm_mesh(self) -> Mesh | None:
        """The mesh the LM samplers run per device on: its weights replicated (`runtime.lm_weights`)."""
        return self.mesh if self.lm_placement == "replicated" else None

    def code_groups(self, prompts: Sequence[str], latent_frames: int, options: GenerateOptions, *,
                    progress: P.Callback | None = None) -> lm.GroupStream:
        """Flan-T5 → the LM's sequence for `latent_frames` frames, written one group per
        `next_group()` (the same draws as `sample_codes` while the window holds every group)."""
        hidden, mask = text.encode_for_lm(self.tokenizers["t5_lm"], self.params["t5_lm"], self.cfg.t5_lm, prompts,
                                          min_length=options.min_text_tokens)
        return lm.GroupStream(self.params["lm"], self.cfg.lm, hidden, mask, num_frames=latent_frames,
                              motion_score=options.motion_score, options=lm_options(options),
                              rng=_lm_keys(options, len(prompts)), window=options.lm_window, progress=progress,
                              mesh=self._lm_mesh)

    def text_context(self, prompts: Sequence[str] | None, batch: int | None = None):
        """T5-v1.1 context [b L D] (right-padded, no mask) and the unconditional zeros; prompts None:
        the null text of `batch` videos (the all-zero context of a caption dropped in training) twice."""
        if prompts is None:
            null = jnp.zeros((batch, self.cfg.dit.text_length, self.cfg.dit.text_hidden_size), jnp.float32)
            return null, null
        return _context_pair(text.encode_for_diffusion(self.tokenizers["t5_dit"], self.params["t5_dit"],
                                                       self.cfg.t5_dit, prompts, self.cfg.dit.text_length))

    def semantic_feature(self, codes, latent_frames: int, *, collect: bool = False):
        """Semantic tokens → the control branch's feature [b t H W c], once per generation."""
        return conditioner.semantic_feature(self.params["diffusion"], self.cfg.dit, self.cfg.tokenizer,
                                            jnp.asarray(codes), latent_frames, collect=collect)

    def sampler_config(self, options: GenerateOptions):
        return sampler_config(self.cfg, options)

    def sample_latents(self, context, uncond_context, feature, options: GenerateOptions, *, key=None,
                       prefix=None, prefix_frames=None, init_noise=None, step_noise=None, trajectory: bool = False,
                       progress: P.Callback | None = None):
        """Guided DPM++(2M) SDE sampling (one jitted scan): latents [b t h w c] float32. key: the
        draws' (default: the seed's); prefix / prefix_frames: clean latents kept (`sampler.sample`)."""
        return self._dit_sample(self.params["diffusion"]["dit"], context, uncond_context, feature, options, key=key,
                                init_noise=init_noise, step_noise=step_noise, prefix=prefix,
                                prefix_frames=prefix_frames, trajectory=trajectory, progress=progress)

    def _dit_sample(self, params, context, uncond_context, feature, options: GenerateOptions, *, key=None,
                    init_noise=None, **kw):
        """The DiT sampler's call (`sample_latents`, `compile`)."""
        if key is None and init_noise is None:
            key = jax.random.fold_in(jax.random.key(options.seed), 1 << 20)
        return sampler.sample(params, self.cfg.dit, self.sampler_config(options), context, uncond_context, feature,
                              key=key, init_noise=init_noise, mesh=self.mesh, **kw)

    def decode(self, latents):
        """Chunked VAE decode → video [b F H W 3] in [0, 1]."""
        return vae.to_unit(vae.decode_latents(self.params["vae"], self.cfg.vae, latents))

    def generate(self, prompts: str | Sequence[str] | None, options: GenerateOptions | None = None, *, codes=None,
                 progress: P.Callback | None = None, **settings) -> GenerateResult:
        """The whole job for one prompt or a list of them, or (prompts None, with `codes`) the null
        text: the diffusion stage sees the all-zero context, one video per row of `codes`.

        Settings are `GenerateOptions` fields, given as `options` or as keywords (seed=,
        num_frames=, steps=, lm_guidance=, dit_guidance=, ...; keywords override `options`).
        `codes` [b N] skips the LM (e.g. `result.codes` of an earlier run). `progress`: called
        with `landiff_jax.progress.Progress` events (stages, compile times, LM tokens and
        diffusion steps after each block of them); e.g. `print` or `progress.Display()`.
        A long video is `generate_stream`'s chunks put together.
        """
        chunks = list(self.generate_stream(prompts, options, codes=codes, progress=progress, **settings))
        join = lambda name: np.concatenate([getattr(c, name) for c in chunks], axis=1)  # noqa: E731
        return GenerateResult(videos=join("frames"), codes=join("codes"), latents=join("latents"),
                              finite=np.logical_and.reduce([c.finite for c in chunks]))

    def generate_stream(self, prompts: str | Sequence[str] | None, options: GenerateOptions | None = None, *,
                        codes=None, progress: P.Callback | None = None, **settings) -> Iterator[Chunk]:
        """`generate` as an iterator of `Chunk`s, each yielded as soon as its frames are decoded:
        one chunk up to C latent frames (49 video frames at full size), else chunk by chunk (see
        the module docstring). Everything is checked here, before the first chunk is asked for."""
        try:
            options = dataclasses.replace(options or GenerateOptions(), **settings)
        except TypeError:
            fields = sorted(f.name for f in dataclasses.fields(GenerateOptions))
            raise ValueError(f"unknown setting(s) {sorted(set(settings) - set(fields))}; "
                             f"the settings are {', '.join(fields)}") from None
        if prompts is None and codes is None:
            raise ValueError("without a prompt (the null text) give the semantic tokens: codes=")
        if codes is None and not set(LM_SIDE) <= set(self.params):
            raise ValueError("this pipeline holds no LM (built for the 'reconstruct' job): give codes=")
        prompts = self.check_prompts(prompts) if prompts is not None else None
        t = check_options(self.cfg, options)
        if codes is not None:
            batch = len(prompts) if prompts is not None else (len(codes) if np.ndim(codes) == 2 else 1)
            codes = self.check_codes(codes, t, batch)
        return self._chunks(prompts, t, options, codes, progress)

    def _chunks(self, prompts, t: int, options: GenerateOptions, codes, progress) -> Iterator[Chunk]:
        report = progress or _ignore
        if t <= self.cfg.max_latent_frames:
            yield self._one_chunk(prompts, t, options, codes, report, progress)
        else:
            yield from self._stream(prompts, t, options, codes, report, progress)

    def _one_chunk(self, prompts, t: int, options: GenerateOptions, codes, report, progress) -> Chunk:
        if codes is None:
            with _stage(report, "LM: semantic tokens"):
                codes = np.asarray(self.sample_codes(prompts, t, options, progress=progress).codes)
        with _stage(report, "diffusion: text context + semantic feature"):
            context, uncond = self.text_context(prompts, len(codes))
            feature = jax.block_until_ready(self.semantic_feature(codes, t))
        with _stage(report, "diffusion: guided steps"):
            latents = jax.block_until_ready(self.sample_latents(context, uncond, feature, options, progress=progress))
        with _stage(report, "VAE: decode"):
            video = np.asarray(self.decode(latents))
        return _chunk(0, 0, video, latents, codes)

    def _stream(self, prompts, t: int, options: GenerateOptions, codes, report, progress) -> Iterator[Chunk]:
        cfg, b = self.cfg, len(prompts) if prompts is not None else len(codes)
        c, s = cfg.dit.latent_frames, cfg.lm.segment_length  # C = S (LanDiffConfig.check)
        plan, groups = cfg.stream_chunks(t), -(-t // s)
        per_group, wanted = num_codes(cfg, s), num_codes(cfg, t)
        if codes is None:
            with _stage(report, "LM: text condition + prefix"):
                next_group = self.code_groups(prompts, t, options, progress=progress).next_group
        else:  # the given codes, the last group padded to a whole one (its extra frames are not used)
            given = iter(np.split(np.pad(codes, ((0, 0), (0, groups * per_group - wanted))), groups, axis=1))
            next_group = functools.partial(next, given)
        with _stage(report, "diffusion: text context"):
            context, uncond = self.text_context(prompts, b)
        decoder = vae.LatentStream(self.params["vae"], cfg.vae)
        key = jax.random.fold_in(jax.random.key(options.seed), 1 << 20)  # chunk 0 draws as a one-chunk video
        features: dict[int, jax.Array] = {}  # group → its frames' semantic feature [b S H W c]
        previous = np.zeros((b, c, cfg.dit.latent_height, cfg.dit.latent_width, cfg.dit.in_channels), np.float32)
        sampled, written, first_frame = 0, 0, 0  # groups, codes, video frames so far
        for k, (start, prefix) in enumerate(plan):
            new_codes = []
            while sampled <= (start + c - 1) // s:  # the groups of the window's frames
                with _stage(report, f"LM: group {sampled + 1}/{groups}"):
                    new_codes.append(next_group())
                with _stage(report, f"semantic feature: group {sampled + 1}/{groups}"):
                    features[sampled] = self.semantic_feature(new_codes[-1], s)
                sampled += 1
            first = start // s
            features = {g: f for g, f in features.items() if g >= first}
            window = _window(features[first], features.get(first + 1, features[first]), jnp.int32(start - first * s))
            with _stage(report, f"diffusion: chunk {k + 1}/{len(plan)}"):
                latents = np.asarray(self.sample_latents(
                    context, uncond, window, options, key=key if k == 0 else jax.random.fold_in(key, k),
                    prefix=previous[:, c - cfg.stream_prefix:], prefix_frames=jnp.int32(prefix), progress=progress))
            with _stage(report, f"VAE: chunk {k + 1}/{len(plan)}"):
                video = np.asarray(vae.to_unit(decoder.push(latents[:, prefix:])))
            new_codes = np.concatenate(new_codes, axis=1) if new_codes else np.zeros((b, 0), np.int32)
            new_codes = new_codes[:, :wanted - written]
            written += new_codes.shape[1]
            yield _chunk(k, first_frame, video, latents[:, prefix:], new_codes)
            first_frame += video.shape[1]
            previous = latents
        decoder.close()


@jax.jit
def _window(first, second, offset):
    """C frames from `offset` of two consecutive groups' features [b S ...] (traced offset: one compile)."""
    return jax.lax.dynamic_slice_in_dim(jnp.concatenate([first, second], axis=1), offset, first.shape[1], axis=1)


def _lm_keys(options: GenerateOptions, batch: int):
    """One key per prompt from the seed (a prompt draws the same whatever the batch)."""
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(options.seed), i))(jnp.arange(batch))


def _chunk(index: int, first_frame: int, video, latents, codes) -> Chunk:
    """A Chunk from decoded frames in [0, 1] (non-finite videos zeroed and flagged)."""
    finite = np.isfinite(video).reshape(len(video), -1).all(axis=1)
    frames = np.stack([to_uint8(v) if ok else np.zeros(v.shape, np.uint8) for v, ok in zip(video, finite)])
    return Chunk(index=index, first_frame=first_frame, frames=frames, latents=np.asarray(latents, np.float32),
                 codes=np.asarray(codes, np.int32), finite=finite)


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
