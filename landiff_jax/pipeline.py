"""Text → semantic tokens → latents → video: LanDiff end to end.

    pipe = LanDiff.from_checkpoint("ckpts/landiff-jax", dtype="bfloat16")
    result = pipe.generate("A red fox walks through snow.", seed=42, steps=50)
    result.videos  # [b F H W 3] uint8; also result.codes [b N], result.latents [b t h w c]

Stages (each compiled once per shape): Flan-T5 encode → LM sampling (one jitted loop) →
T5-v1.1 encode → semantic conditioner (once per generation) → guided DiT sampling (one jitted
scan) → chunked VAE decode. Every argument is checked before any heavy compute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from landiff_jax import checkpoint, diffusion, lm, runtime, text, tokenizer, vae
from landiff_jax import progress as P
from landiff_jax.config import LanDiffConfig
from landiff_jax.diffusion import conditioner, sampler
from landiff_jax.nn.init import random_params
from landiff_jax.parallel import replicate, shard_params
from landiff_jax.video_io import to_uint8

TEXT_COMPONENTS = ("t5_lm", "t5_dit")
# what a job reads: generation; reconstruction (generation from given codes, without the LM side, plus the
# standalone tokenizer with Theia to encode videos); or everything but Theia (encoding features, training)
JOBS = ("generate", "reconstruct", "all")
LM_SIDE = ("t5_lm", "lm")  # what reconstruction does not read


@dataclasses.dataclass(frozen=True)
class Component:
    """One entry of the converted checkpoint: its config inside LanDiffConfig, the shapes of the
    params a job reads (None: the job reads none), and whether a mesh shards it (else replicates)."""

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


@dataclasses.dataclass
class GenerateResult:
    videos: np.ndarray  # [b F H W 3] uint8 (`landiff_jax.write_mp4` saves one)
    codes: np.ndarray  # [b N] int32 semantic tokens (reusable as `generate(..., codes=)`)
    latents: np.ndarray  # [b t h w c] float32 sampler output
    finite: np.ndarray  # [b] bool: False where the decoded video held NaN/inf (its frames are then zeros)


def weight_bytes(cfg: LanDiffConfig, mesh: Mesh | None = None, job: str = "generate") -> int:
    """Bytes of the weights `job` reads that one device holds (sharded components split over
    the mesh's devices, the others replicated)."""
    devices = mesh.devices.size if mesh is not None else 1
    total = 0
    for name, tree in abstract_params(cfg, job).items():
        component = COMPONENTS[name]
        size = sum(math.prod(a.shape) for a in jax.tree.leaves(tree))
        size *= jnp.dtype(component.config(cfg).param_dtype).itemsize
        total += -(-size // devices) if component.sharded and mesh is not None else size
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


def check_memory(cfg: LanDiffConfig, mesh: Mesh | None = None, job: str = "generate") -> None:
    """Refuse, before anything is built, a system whose weights alone exceed a device's memory."""
    device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
    need, have = weight_bytes(cfg, mesh, job), device_memory(device)
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


class LanDiff:
    """The whole system with its params on device; one instance serves many generate calls."""

    def __init__(self, cfg: LanDiffConfig, params: Mapping[str, Any] | Iterable[tuple[str, Any]],
                 tokenizers: dict[str, text.T5TextTokenizer], *, random_weights: bool = False,
                 mesh: Mesh | None = None, dit_attention: str | None = None):
        """params: {component: params} or (component, params) pairs, holding what the job reads
        (`abstract_params(cfg, job)`: generation's, or more, see JOBS), placed one at a time so that a lazily loaded
        component leaves host memory before the next is read. The kernels are chosen here, once,
        for the devices (`runtime.configure`; `dit_attention` forces the DiT's). `mesh` (see
        `parallel.make_mesh`): the text encoders' and the LM's weights are sharded by the
        logical-axis rules (the LM is memory-bound: each device reads its share), the other
        stages' weights are replicated and the diffusion guidance batch is split over devices."""
        cfg = runtime.configure(cfg.check(), mesh=mesh, dit_attention=dit_attention)
        self.cfg = cfg
        self.tokenizers = tokenizers
        self._progress = P.Relay()  # the samplers' fixed static callback (see landiff_jax.progress)
        self.random_weights = random_weights
        self.mesh = mesh
        abstract = abstract_params(cfg) if mesh is not None else {}
        self.params = {}
        for name, tree in params.items() if isinstance(params, Mapping) else params:
            component = COMPONENTS[name]
            tree = jax.tree.map(lambda a, d=component.config(cfg).param_dtype: jnp.asarray(a, d), tree)
            if mesh is None:
                self.params[name] = tree
            elif component.sharded:
                self.params[name] = shard_params(tree, abstract[name], mesh)
            else:
                self.params[name] = replicate(tree, mesh)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, directory: str | Path, dtype: str | None = None, mesh: Mesh | None = None,
                        dit_attention: str | None = None, verify: str = "cheap", job: str = "generate") -> "LanDiff":
        """A converted checkpoint (`tools/convert.py`), computed in `dtype` (default: as stored),
        reading only the parameters `job` uses (see JOBS); dit_attention: see `runtime.configure`;
        verify: the checksum level of each component (`checkpoint.load_component`)."""
        cfg = checkpoint.load_config(directory, dtype)
        check_memory(cfg, mesh, job)
        params = ((name, checkpoint.load_component(directory, name, tree, verify=verify))
                  for name, tree in abstract_params(cfg, job).items())
        tokenizers = {c: checkpoint.text_tokenizer(directory, c) for c in TEXT_COMPONENTS}
        return cls(cfg, params, tokenizers, mesh=mesh, dit_attention=dit_attention)

    @classmethod
    def random(cls, cfg: LanDiffConfig, seed: int = 0, mesh: Mesh | None = None,
               dit_attention: str | None = None, job: str = "generate") -> "LanDiff":
        """RANDOM weights of what `job` reads (component i of COMPONENTS drawn from seed + i, as
        `prepare.load_frozen_models` draws them) and byte-level text ids: shows the code path, the
        video is noise."""
        check_memory(cfg, mesh, job)
        order = list(COMPONENTS)
        params = {name: random_params(tree, seed + order.index(name))
                  for name, tree in abstract_params(cfg, job).items()}
        return cls(cfg, params, {c: text.ByteTokenizer() for c in TEXT_COMPONENTS}, random_weights=True, mesh=mesh,
                   dit_attention=dit_attention)

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
        sample_options = lm.SampleOptions.create(guidance_scale=options.lm_guidance, temperature=options.temperature,
                                                 top_k=options.top_k, top_p=options.top_p, greedy=options.greedy)
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(options.seed), i))(jnp.arange(len(prompts)))
        return lm.sample(self.params["lm"], self.cfg.lm, hidden, mask, num_frames=latent_frames,
                         motion_score=options.motion_score, options=sample_options, rng=keys, trace=trace,
                         progress=progress)

    def text_context(self, prompts: Sequence[str] | None, batch: int | None = None):
        """T5-v1.1 context [b L D] (right-padded, no mask) and the unconditional zeros; prompts None:
        the null text of `batch` videos (the all-zero context of a caption dropped in training) twice."""
        if prompts is None:
            null = jnp.zeros((batch, self.cfg.dit.text_length, self.cfg.dit.text_hidden_size), jnp.float32)
            return null, null
        context = text.encode_for_diffusion(self.tokenizers["t5_dit"], self.params["t5_dit"], self.cfg.t5_dit,
                                            prompts, self.cfg.dit.text_length)
        context = context.astype(jnp.float32)
        return context, jnp.zeros_like(context)

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
        key = None if init_noise is not None else jax.random.fold_in(jax.random.key(options.seed), 1 << 20)
        return sampler.sample(self.cfg.dit, self.sampler_config(options), self.params["diffusion"]["dit"], context,
                              uncond_context, feature, key=key, init_noise=init_noise, step_noise=step_noise,
                              trajectory=trajectory, mesh=self.mesh, progress=progress)

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
        diffusion steps from inside the compiled loops); e.g. `print` or `progress.Display()`.
        """
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
        # the loops take the pipeline's relay (a fixed static argument) rather than `progress`
        relay = self._progress if progress is not None else None
        self._progress.target = progress
        report = progress or (lambda event: None)
        try:
            if codes is None:
                with _stage(report, "LM: semantic tokens"):
                    codes = np.asarray(self.sample_codes(prompts, t, options, progress=relay).codes)
            with _stage(report, "diffusion: text context + semantic feature"):
                context, uncond = self.text_context(prompts, len(codes))
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


@contextlib.contextmanager
def _stage(progress: P.Callback, name: str):
    progress(P.Progress(name, "start"))
    start = time.perf_counter()
    yield
    progress(P.Progress(name, "done", seconds=time.perf_counter() - start))
