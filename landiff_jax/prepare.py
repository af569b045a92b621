"""Clips → training examples of every stage, computed by the frozen models (`tools/prepare_data.py`).

Per clip (uint8 frames [F H W 3], F = 1 + 4k, and a caption), one jitted call per batch computes
what the requested stages need:
- Theia features of the semantic frames, every 4th video frame (the latent frames' positions,
  T = 1 + k; the tokenizer's encode sees the same frames) [T h w C];
- the VAE posterior, mean and std, UNSCALED [T H/8 W/8 z] (training samples
  scale_factor · (mean + std · ε) at every step);
- the Flan-T5 states of the caption (LM side: the encoder sees it left-padded with its mask,
  the example stores its rows right-padded to max_text, with the mask);
- the T5-v1.1 states (diffusion side: right-padded to the DiT's text_length, no mask);
- with a tokenizer, its codes of the features [N].
The examples of each stage follow `records`' schemas; diffusion examples carry codes when they are
computed, else features (`condition` chooses). On several devices the batch is split over a
data mesh (`parallel.make_mesh`), the models replicated.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from landiff_jax.config import LanDiffConfig
from landiff_jax.data import records
from landiff_jax.data.clips import Clip, ClipSpec, ordered_map
from landiff_jax.text import T5TextTokenizer
from landiff_jax.text.encoders import encode_ids, unpadded
from landiff_jax.text.tokenizer import TruncationWarning
from landiff_jax.tokenizer.model import VideoVQ
from landiff_jax.vae import api as vae_api

STAGE_ORDER = ("tokenizer", "diffusion", "lm")
CONDITIONS = ("codes", "features", "both")
COMPONENTS = ("t5_lm", "t5_dit", "tokenizer", "vae")  # what preparation runs
REPORT_FILE = "report.json"


class PrepareError(ValueError):
    """Settings that cannot work (one line for the user)."""


class ClipSource(Protocol):
    spec: ClipSpec

    def __len__(self) -> int: ...

    def caption(self, index: int) -> str: ...

    def clip(self, index: int) -> Clip: ...

    @property
    def meta(self) -> dict[str, Any]: ...


# --- the frozen models ------------------------------------------------------------------------

@dataclasses.dataclass
class FrozenModels:
    cfg: LanDiffConfig
    params: dict[str, Any]  # COMPONENTS; the tokenizer's with Theia ('feature_extractor')
    tokenizers: dict[str, T5TextTokenizer]  # t5_lm, t5_dit
    weights: dict[str, Any]  # where the weights came from (recorded in dataset.json)

    @property
    def has_codes(self) -> bool:
        """Whether the tokenizer can give codes (its encoder and quantizer are there, not only Theia)."""
        return {"encoder", "quantizer"} <= set(self.params["tokenizer"])


def load_frozen_models(checkpoint_dir: str | Path | None = None, *, preset: str = "tiny", seed: int = 0,
                       dtype: str | None = None) -> FrozenModels:
    """The models preparation runs, from a converted checkpoint directory, or (checkpoint_dir None)
    RANDOM weights of `preset` with byte-level text ids: the same draws as `LanDiff.random(cfg,
    seed, job='reconstruct')` (the text encoders, the VAE, the tokenizer with Theia)."""
    from landiff_jax import checkpoint, pipeline, text
    from landiff_jax.nn.init import random_params
    from landiff_jax.tokenizer.api import abstract_params as tokenizer_abstract

    if checkpoint_dir is None:
        cfg = LanDiffConfig.preset(preset).with_dtype(dtype or "float32")
        abstract = {name: pipeline.COMPONENTS[name].abstract(cfg, "all") for name in COMPONENTS}
        abstract["tokenizer"] = tokenizer_abstract(cfg.tokenizer, theia=True)
        params = {name: random_params(abstract[name], seed + checkpoint.COMPONENTS.index(name)) for name in COMPONENTS}
        tokenizers = {c: text.ByteTokenizer() for c in pipeline.TEXT_COMPONENTS}
        return FrozenModels(cfg, params, tokenizers, {"random_weights": {"preset": preset, "seed": seed}})
    cfg = checkpoint.load_config(checkpoint_dir, dtype)
    # restored concurrently, then each in its config's param_dtype (as the pipeline places them)
    restored = checkpoint.load_components(checkpoint_dir, {name: {} for name in COMPONENTS})
    params = {name: jax.tree.map(lambda a, d=getattr(cfg, name).param_dtype: jnp.asarray(a, d), restored.pop(name))
              for name in COMPONENTS}
    tokenizers = {c: checkpoint.text_tokenizer(checkpoint_dir, c) for c in pipeline.TEXT_COMPONENTS}
    return FrozenModels(cfg, params, tokenizers, {"checkpoint": str(Path(checkpoint_dir).resolve())})


FULL_CLIP_PIXELS = 49 * 480 * 720  # one full-size clip: ~35 GB of VAE-encoder working set (CPU compile)
MAX_CLIPS_PER_DEVICE = 8


def default_batch_size(spec: ClipSpec, devices: int) -> int:
    """Clips per jitted call: per device, as many as hold the pixels of one full-size clip (the VAE
    encoder runs a clip whole: its GroupNorms see every frame), between 1 and 8."""
    pixels = spec.num_frames * spec.height * spec.width
    return devices * min(MAX_CLIPS_PER_DEVICE, max(1, FULL_CLIP_PIXELS // pixels))


# --- one batch through the models ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Outputs:
    """Which arrays the batch computation gives (a static argument: one compile per choice)."""

    features: bool = False
    posterior: bool = False
    lm_text: bool = False
    dit_text: bool = False
    codes: bool = False


@functools.partial(jax.jit, static_argnames=("cfg", "outputs"))
def encode_batch(params, frames, lm_ids, lm_mask, dit_ids, *, cfg: LanDiffConfig, outputs: Outputs):
    """frames uint8 [b F H W 3], lm_ids/lm_mask [b max_text] (left-padded), dit_ids [b text_length]
    → {name: float32/int32 array [b ...]} of the `outputs` asked for."""
    out = {}
    if outputs.features or outputs.codes:
        model = VideoVQ(cfg.tokenizer)
        semantic = frames[:, ::cfg.vae.temporal_compress_times]  # [b T H W 3], T = latent frames
        features = model.apply({"params": params["tokenizer"]}, semantic, method=VideoVQ.extract_features)
        if outputs.features:
            out["features"] = features.astype(jnp.float32)
        if outputs.codes:
            out["codes"] = model.apply({"params": params["tokenizer"]}, features, method=VideoVQ.encode_features)
    if outputs.posterior:
        mean, logvar = vae_api.posterior(params["vae"], cfg.vae, vae_api.from_unit(vae_api.uint8_to_unit(frames)))
        out["latent_mean"] = mean.astype(jnp.float32)
        out["latent_std"] = jnp.exp(0.5 * logvar.astype(jnp.float32))
    if outputs.lm_text:
        out["lm_text"] = encode_ids(params["t5_lm"], cfg.t5_lm, lm_ids, lm_mask).astype(jnp.float32)
    if outputs.dit_text:
        out["dit_text"] = encode_ids(params["t5_dit"], cfg.t5_dit, dit_ids, None).astype(jnp.float32)
    return out


def right_padded(hidden: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded states [b n d] and mask [b n] → the same rows moved to the front, zeros after."""
    out = np.zeros_like(hidden)
    for row, real in zip(out, unpadded(hidden, mask)):
        row[:len(real)] = real
    lengths = np.asarray(mask, bool).sum(1)
    return out, np.arange(hidden.shape[1])[None, :] < lengths[:, None]


# --- examples of every stage -----------------------------------------------------------------

@dataclasses.dataclass
class StageExamples:
    """The examples of `stages` (one dataset each) for the clips of `source`."""

    source: ClipSource
    models: FrozenModels
    stages: tuple[str, ...]
    max_text: int  # Flan-T5 rows of an lm example
    batch_size: int
    codes: bool  # compute the tokenizer's codes (the lm stage needs them)
    condition: str = "codes"  # the diffusion example's semantic condition: codes, features or both
    decode_workers: int = 4
    mesh: Any = None  # a parallel.make_mesh mesh, or None (one device)

    def __post_init__(self):
        cfg = self.models.cfg
        unknown = [s for s in self.stages if s not in STAGE_ORDER]
        if unknown or not self.stages or len(set(self.stages)) != len(self.stages):
            raise PrepareError(f"stages must be distinct ones of {STAGE_ORDER}, got {self.stages}")
        if self.condition not in CONDITIONS:
            raise PrepareError(f"the diffusion condition must be one of {CONDITIONS}, got {self.condition!r}")
        if not self.codes and ("lm" in self.stages or ("diffusion" in self.stages and self.condition != "features")):
            raise PrepareError(f"stages {','.join(self.stages)} with diffusion condition {self.condition!r} need "
                               "the tokenizer's codes: pass --codes")
        if self.codes and not self.models.has_codes:
            raise PrepareError("codes asked for, but the tokenizer has no encoder/quantizer weights (Theia only)")
        if "feature_extractor" not in self.models.params["tokenizer"]:
            raise PrepareError("the tokenizer params hold no Theia weights ('feature_extractor')")
        spec = self.source.spec
        if (spec.height, spec.width) != cfg.video_size:
            raise PrepareError(f"clips of {spec.height}×{spec.width}, the models take {cfg.video_size[0]}×"
                               f"{cfg.video_size[1]}")
        try:
            self.frames = cfg.latent_frames(spec.num_frames)  # semantic/latent frames T
        except ValueError as e:
            raise PrepareError(str(e)) from None
        if self.batch_size < 1 or self.max_text < 1:
            raise PrepareError(f"batch_size and max_text must be >= 1, got {self.batch_size} and {self.max_text}")
        devices = 1 if self.mesh is None else self.mesh.size
        if self.batch_size % devices:
            raise PrepareError(f"batch_size {self.batch_size} must be a multiple of the {devices} devices")
        self.outputs = Outputs(
            features="tokenizer" in self.stages or ("diffusion" in self.stages and self.condition != "codes"),
            posterior="diffusion" in self.stages, lm_text="lm" in self.stages, dit_text="diffusion" in self.stages,
            codes=self.codes)
        self._params = self._place(self.models.params)

    def _place(self, tree):
        if self.mesh is None:
            return tree
        from landiff_jax.parallel import replicate

        return replicate(tree, self.mesh)

    # -- what the datasets hold
    def schemas(self) -> dict[str, dict[str, records.Field]]:
        cfg, t = self.models.cfg, self.frames
        tok = cfg.tokenizer
        features = (t, *tok.image_size, tok.image_channels)
        f = cfg.vae.spatial_factor
        latent = (t, self.source.spec.height // f, self.source.spec.width // f, cfg.vae.z_channels)
        codes = tok.num_codes(t)
        schemas = {
            "tokenizer": records.tokenizer_schema(*features),
            "diffusion": records.diffusion_schema(
                latent, cfg.dit.text_length, cfg.t5_dit.d_model,
                num_codes=codes if self.condition != "features" else None,
                features=features if self.condition != "codes" else None),
            "lm": records.lm_schema(self.max_text, cfg.t5_lm.d_model, codes),
        }
        return {stage: schemas[stage] for stage in self.stages}

    def meta(self, stage: str) -> dict[str, Any]:
        spec = self.source.spec
        meta = {**self.source.meta, "clip": dataclasses.asdict(spec), "weights": self.models.weights,
                "dtype": jnp.dtype(self.models.cfg.vae.dtype).name}
        if stage == "lm":
            meta.update(frames=self.frames, codebook_size=self.models.cfg.tokenizer.codebook_size)
        if stage == "diffusion":
            meta["scale_factor"] = self.models.cfg.vae.scale_factor
        return meta

    def plan(self, examples_per_shard: int) -> list[records.DatasetInfo]:
        shards = {s: records.plan_shards(s, len(self.source), examples_per_shard) for s in self.stages}
        return [records.DatasetInfo(s, schema, shards[s], self.meta(s)) for s, schema in self.schemas().items()]

    def truncated_captions(self) -> dict[str, list[dict[str, Any]]]:
        """Captions longer than a text encoder's rows (cut to them), per side."""
        limits = {"lm": ("t5_lm", self.max_text), "diffusion": ("t5_dit", self.models.cfg.dit.text_length)}
        out = {stage: [] for stage in ("lm", "diffusion") if stage in self.stages}
        for i in range(len(self.source)):
            caption = self.source.caption(i)
            for stage in out:
                component, limit = limits[stage]
                tokens = len(self.models.tokenizers[component].ids(caption)) + 1  # with </s>
                if tokens > limit:
                    out[stage].append({"clip": i, "tokens": tokens, "kept": limit, "caption": caption})
        return out

    # -- computing them
    def launch(self, clips: Sequence[Clip]) -> tuple[dict[str, jax.Array], np.ndarray]:
        """Start one batch on the device(s) (padded to batch_size by repeating its last clip, so
        that one compile serves every batch): (its device outputs, the left-padded LM mask)."""
        inputs, lm_mask = self._inputs(clips)
        return encode_batch(self._params, *inputs, cfg=self.models.cfg, outputs=self.outputs), lm_mask

    def flops_per_batch(self) -> float | None:
        """The floating-point operations of one batch through the models, as XLA counts them in the
        computation lowered for the host CPU (before fusion; a GPU's lowering gives no count), from
        the shapes alone; None where XLA gives no count."""
        inputs, _ = self._inputs([self.source.clip(0)])
        cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), (self._params, inputs))
        traced = encode_batch.trace(shapes[0], *shapes[1], cfg=self.models.cfg, outputs=self.outputs)
        cost = traced.lower().cost_analysis()
        return float(cost["flops"]) if cost and "flops" in cost else None

    def _inputs(self, clips: Sequence[Clip]) -> tuple[list, np.ndarray]:
        """encode_batch's inputs for `clips` padded to batch_size (on the mesh when there is one),
        and the left-padded LM mask."""
        cfg = self.models.cfg
        clips = list(clips) + [clips[-1]] * (self.batch_size - len(clips))
        captions = [c.caption for c in clips]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)  # listed in the report instead
            lm_ids, lm_mask = self.models.tokenizers["t5_lm"].encode_lm(captions, pad_to=self.max_text)
            dit_ids = self.models.tokenizers["t5_dit"].encode_diffusion(captions, cfg.dit.text_length)
        inputs = [np.stack([c.frames for c in clips]), lm_ids, lm_mask, dit_ids]
        if self.mesh is not None:
            from landiff_jax.parallel import batch_sharding

            inputs = [jax.device_put(x, batch_sharding(self.mesh, x.ndim)) for x in inputs]
        return inputs, lm_mask

    def collect(self, launched: tuple[dict[str, jax.Array], np.ndarray], n: int) -> dict[str, np.ndarray]:
        """The host numpy outputs of the first n clips of a launched batch (waits for it)."""
        out, lm_mask = launched
        out = {k: np.asarray(v)[:n] for k, v in out.items()}
        if "lm_text" in out:
            out["lm_text"], out["lm_mask"] = right_padded(out["lm_text"], lm_mask[:n])
        return out

    def rows(self, clips: Sequence[Clip], out: dict[str, np.ndarray]) -> Iterator[tuple[dict[str, np.ndarray], ...]]:
        """Per clip, its example of every stage (in `stages` order)."""
        for i, clip in enumerate(clips):
            examples = {
                "tokenizer": lambda: {"features": out["features"][i]},
                "diffusion": lambda: {"latent_mean": out["latent_mean"][i], "latent_std": out["latent_std"][i],
                                      "text_embedding": out["dit_text"][i],
                                      **({"codes": out["codes"][i]} if self.condition != "features" else {}),
                                      **({"features": out["features"][i]} if self.condition != "codes" else {})},
                "lm": lambda: {"text_embedding": out["lm_text"][i], "text_mask": out["lm_mask"][i],
                               "codes": out["codes"][i], "frames": np.asarray(self.frames, np.int32),
                               "motion_score": np.asarray(clip.motion_score, np.float32)},
            }
            yield tuple(examples[stage]() for stage in self.stages)

    def examples(self, start: int, count: int) -> Iterator[tuple[dict[str, np.ndarray], ...]]:
        """Clips start .. start+count-1 (decoded ahead in threads) through the models, a batch at a
        time; the next batch is launched before the previous one's outputs are fetched and written."""
        clips = iter(ordered_map(self.source.clip, range(start, start + count), self.decode_workers,
                                 2 * self.batch_size))
        previous = None
        while batch := list(itertools.islice(clips, self.batch_size)):
            launched = (batch, self.launch(batch))
            if previous is not None:
                yield from self.rows(previous[0], self.collect(previous[1], len(previous[0])))
            previous = launched
        if previous is not None:
            yield from self.rows(previous[0], self.collect(previous[1], len(previous[0])))


def write(examples: StageExamples, out: str | Path, examples_per_shard: int,
          log: Callable[[str], None] = print, progress_seconds: float = 10.0) -> list[records.DatasetInfo]:
    """Write OUT/<stage> for every stage (resumable, see `records.write_datasets`), logging each
    shard and, inside long shards, progress in clips/s."""
    out = Path(out)
    infos = examples.plan(examples_per_shard)
    start, done, shown = time.monotonic(), [0], [time.monotonic()]

    def on_example():
        done[0] += 1
        now = time.monotonic()
        if now - shown[0] >= progress_seconds:
            shown[0] = now
            log(f"... {done[0]} clips encoded, {done[0] / (now - start):.2f} clips/s")

    def on_shard(shard: records.Shard, skipped: bool):
        seconds = time.monotonic() - start
        state = "kept (complete)" if skipped else "written"
        log(f"shard {shard.start // examples_per_shard}: {state}; {shard.start + shard.num_examples}/"
            f"{len(examples.source)} clips, {done[0] / seconds if seconds > 0 else 0.0:.2f} clips/s")

    records.write_datasets([(out / info.stage, info) for info in infos], examples.examples, on_example, on_shard)
    return infos


def write_report(out: str | Path, examples: StageExamples, clip_report: dict[str, Any] | None = None) -> dict:
    """OUT/report.json: the source, what became of every listed clip (bad ones by kind, with the
    reason) and the captions cut to a text encoder's rows. Written before the shards."""
    n = len(examples.source)
    report = {"source": examples.source.meta, "stages": list(examples.stages),
              "clips": clip_report or {"listed": n, "usable": n, "bad_counts": {}, "bad": {}},
              "captions_truncated": examples.truncated_captions()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records.atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=1))
    return report
