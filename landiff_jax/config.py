"""The whole system's configuration: one frozen bundle of every component's config.

Built from a preset (`full`, `tiny`), from a config file (`configs/*.py`), from the original's
configuration (`release.config_from_original`), or from the plain dict a converted checkpoint
stores (`to_dict` / `from_dict`, versioned); `LanDiffConfig.check()` verifies that the
components agree where they hand data to each other (codebook, frame layout, feature channels,
latent grid, text widths).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import types
import typing
from typing import Any, Mapping

import jax.numpy as jnp

from landiff_jax.diffusion.config import DiTConfig, SamplerConfig
from landiff_jax.lm.config import LMConfig
from landiff_jax.text.config import T5Config
from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.vae.config import VAEConfig

PRESETS = ("full", "tiny")
# version of the plain dict `to_dict` writes; `from_dict` reads only this one
DICT_VERSION = 1
# fields added since version 1 with a default, which a dict written before them lacks (the
# default applies); every other missing field is an error
ADDED_FIELDS = {"SamplerConfig": ("stream_prefix_frames",), "TokenizerConfig": ("remat",),
                "DiTConfig": ("scan_unroll",)}


@dataclasses.dataclass(frozen=True)
class LanDiffConfig:
    t5_lm: T5Config  # Flan-T5-XXL encoder (LM side)
    t5_dit: T5Config  # T5-v1.1-XXL encoder (diffusion side)
    tokenizer: TokenizerConfig
    lm: LMConfig
    dit: DiTConfig
    sampler: SamplerConfig
    vae: VAEConfig

    @property
    def max_latent_frames(self) -> int:
        return self.tokenizer.temporal_size

    def video_frames(self, latent_frames: int) -> int:
        return self.vae.video_frames(latent_frames)

    def latent_frames(self, num_frames: int | None, *, streaming: bool = False) -> int:
        """Video frames → latent/semantic frames T (odd, ≥ 3, ≤ the tokenizer's temporal size:
        the chunked VAE decode needs odd T); None → the maximum. With `streaming`, also the long
        videos generated chunk by chunk (`streamed_frames`)."""
        t_max = self.max_latent_frames
        if num_frames is None:
            return t_max
        valid = self.valid_video_frames()
        t = (num_frames - 1) // self.vae.temporal_compress_times + 1
        if num_frames in valid or (streaming and num_frames in self.streamed_frames(t)):
            return t
        longer = f", or streamed: {', '.join(map(str, self.streamed_frames()))}, ..." if streaming else ""
        raise ValueError(f"num_frames={num_frames} is not supported; choose one of {valid}{longer}")

    def streamed_frames(self, up_to: int | None = None) -> list[int]:
        """Video frames of the streamed lengths, T = C + k·(C − P) latent frames with k ≥ 1 and
        T odd (the causal VAE decode needs odd T): those with T ≤ `up_to`, else the first three."""
        c, step = self.dit.latent_frames, self.stream_step
        if c % 2 == 0 and step % 2 == 0:
            return []
        lengths = (t for t in itertools.count(c + step, step) if t % 2)
        chosen = itertools.islice(lengths, 3) if up_to is None else itertools.takewhile(lambda t: t <= up_to, lengths)
        return [self.video_frames(t) for t in chosen]

    @property
    def stream_prefix(self) -> int:
        """P: clean prefix latents of every streamed chunk after the first (`SamplerConfig.stream_prefix`)."""
        return self.sampler.stream_prefix(self.dit.latent_frames)

    @property
    def stream_step(self) -> int:
        """C − P: new latent frames of every streamed chunk after the first."""
        return self.dit.latent_frames - self.stream_prefix

    def stream_chunks(self, latent_frames: int) -> list[tuple[int, int]]:
        """The chunks of a video of T latent frames, as (start, prefix): chunk k is the window
        [start, start + C) of the latent sequence (C = the DiT's frames, one LM group); its first
        `prefix` frames are the previous chunk's last ones, kept clean, the rest it generates.
        (0, 0), then (k·(C − P), P) for k ≥ 1 until the window ends at T."""
        c, step = self.dit.latent_frames, self.stream_step
        if latent_frames < c or (latent_frames - c) % step:
            raise ValueError(f"{latent_frames} latent frames are not {c} + k·{step}")
        return [(0, 0)] + [(k * step, self.stream_prefix) for k in range(1, (latent_frames - c) // step + 1)]

    def valid_video_frames(self) -> list[int]:
        """The video frame counts generation takes (see `latent_frames`)."""
        return [self.video_frames(t) for t in range(3, self.max_latent_frames + 1, 2)]

    @property
    def video_size(self) -> tuple[int, int]:
        f = self.vae.spatial_factor
        return self.dit.latent_height * f, self.dit.latent_width * f

    def check(self) -> "LanDiffConfig":
        """Raise ValueError listing every disagreement between components."""
        tok, lm, dit = self.tokenizer, self.lm, self.dit
        pairs = [
            ("lm.codebook_size", lm.codebook_size, "tokenizer.codebook_size", tok.codebook_size),
            ("lm.iframe_tokens", lm.iframe_tokens, "tokenizer.iframe_tokens", tok.iframe_tokens),
            ("lm.pframe_tokens", lm.pframe_tokens, "tokenizer.pframe_tokens", tok.pframe_tokens),
            ("lm.segment_length", lm.segment_length, "tokenizer.temporal_size", tok.temporal_size),
            ("lm.text_dim", lm.text_dim, "t5_lm.d_model", self.t5_lm.d_model),
            ("dit.text_hidden_size", dit.text_hidden_size, "t5_dit.d_model", self.t5_dit.d_model),
            ("dit.semantic.z_channels", dit.semantic.z_channels, "tokenizer.output_channels", tok.output_channels),
            ("dit.latent_frames", dit.latent_frames, "tokenizer.temporal_size", tok.temporal_size),
            ("dit.in_channels", dit.in_channels, "vae.z_channels", self.vae.z_channels),
            ("dit latent grid", (dit.latent_height, dit.latent_width), "tokenizer grid × upsampling",
             tuple(s * 2 ** (len(dit.semantic.ch_mult) - 1) for s in tok.grid)),
        ]
        problems = [f"{a}={x} but {b}={y}" for a, x, b, y in pairs if x != y]
        prefix = self.sampler.stream_prefix_frames
        if prefix is not None and prefix >= dit.latent_frames:
            problems.append(f"sampler.stream_prefix_frames={prefix} must be < dit.latent_frames={dit.latent_frames}")
        if problems:
            raise ValueError("inconsistent LanDiff configuration:\n  " + "\n  ".join(problems))
        return self

    def with_dtype(self, dtype) -> "LanDiffConfig":
        """Parameters and compute of every network in `dtype` (float32 for parity, bf16 on GPU);
        the VAE's float32 convolutions stay at 'highest' precision."""
        dtype = jnp.dtype(dtype)
        cast = lambda c: dataclasses.replace(c, dtype=dtype, param_dtype=dtype)
        vae = cast(self.vae)
        if dtype != jnp.float32:
            vae = dataclasses.replace(vae, precision="default")
        return dataclasses.replace(self, t5_lm=cast(self.t5_lm), t5_dit=cast(self.t5_dit),
                                   tokenizer=cast(self.tokenizer),
                                   lm=cast(self.lm), dit=cast(self.dit), vae=vae)

    # ---- constructors ------------------------------------------------------------------
    @classmethod
    def full(cls) -> "LanDiffConfig":
        """The released system: 49 frames of 480×720 from 13 semantic frames."""
        return cls(T5Config.xxl(), T5Config.xxl(), TokenizerConfig.full(), LMConfig.full(), DiTConfig.full(),
                   SamplerConfig(), VAEConfig.full()).check()

    @classmethod
    def tiny(cls) -> "LanDiffConfig":
        """A few-MB system for tests and the CPU demo: 9 frames of 64×96 from 3 semantic frames."""
        tokenizer = TokenizerConfig.tiny()
        dit = DiTConfig.tiny(text_length=96,  # room for byte-level prompts in the random-weight demo
                             semantic=dataclasses.replace(DiTConfig.tiny().semantic,
                                                          z_channels=tokenizer.output_channels))
        return cls(T5Config.tiny(), T5Config.tiny(), tokenizer, LMConfig.tiny(), dit,
                   SamplerConfig(num_steps=4, cfg_num_steps=4), VAEConfig.tiny()).check()

    @classmethod
    def preset(cls, name: str) -> "LanDiffConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
        return getattr(cls, name)()

    @classmethod
    def select(cls, config: str | None = None, preset: str | None = None,
               default: str | None = None) -> "LanDiffConfig":
        """The tools' choice: `config`, a file `configs/*.py` whose `get_config()` returns a
        LanDiffConfig, or `preset` (a shorthand for the named configs), else `default`'s preset.
        Raises config_file.ConfigError (one line) for a bad file or both given."""
        from landiff_jax import config_file

        if config and preset:
            raise config_file.ConfigError("give --config or --preset, not both")
        if config:
            cfg = config_file.load(config)
            if not isinstance(cfg, cls):
                raise config_file.ConfigError(f"{config}: get_config() must return a LanDiffConfig, got "
                                              f"{type(cfg).__name__}")
            try:
                return cfg.check()
            except ValueError as e:
                raise config_file.ConfigError(f"{config}: {e}") from e
        if not (preset or default):
            raise config_file.ConfigError("give --config configs/<name>.py or --preset")
        return cls.preset(preset or default)

    # ---- plain data (what a converted checkpoint stores) ----------------------------------
    def to_dict(self) -> dict[str, Any]:
        """{'version': DICT_VERSION, 'config': {component: {field: value}}}: JSON-able (dtypes as
        names, tuples as lists)."""
        return {"version": DICT_VERSION, "config": _plain(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LanDiffConfig":
        """Inverse of `to_dict`; an unknown version, a missing or unknown field raises ValueError
        naming it."""
        version = data.get("version") if isinstance(data, Mapping) else None
        if version != DICT_VERSION:
            raise ValueError(f"LanDiff config dict version {version!r} is not supported "
                             f"(this code reads {DICT_VERSION})")
        return _build(cls, data.get("config"), "config").check()


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (jnp.dtype, type)):  # dtype fields: jnp.float32 or a dtype instance
        return jnp.dtype(value).name
    return value


def _build(cls, data, path: str):
    """A `cls` dataclass from `_plain`'s output, typed by the fields' annotations."""
    if not isinstance(data, Mapping):
        raise ValueError(f"LanDiff config: '{path}' must be a dict, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    added = set(ADDED_FIELDS.get(cls.__name__, ()))
    unknown, missing = sorted(set(data) - set(fields)), sorted(set(fields) - set(data) - added)
    if unknown or missing:
        raise ValueError(f"LanDiff config: '{path}' ({cls.__name__}) has unknown field(s) {unknown} / lacks {missing}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _value(hints[name], data[name], f"{path}.{name}", name) for name in fields if name in data})


def _value(hint, value, path: str, name: str):
    """A field's value from its plain form, checked against the field's type (a stored config may
    be damaged: each problem names the field)."""
    if name in ("dtype", "param_dtype"):
        try:
            dtype = jnp.dtype(value)
        except TypeError:
            dtype = None
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"LanDiff config: '{path}' must name a floating-point dtype, got {value!r}")
        return dtype
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    if value is None:
        if type(None) not in options:
            raise ValueError(f"LanDiff config: '{path}' must not be null")
        return None
    for option in options:
        if dataclasses.is_dataclass(option):
            return _build(option, value, path)
        if typing.get_origin(option) is tuple:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"LanDiff config: '{path}' must be a list, got {value!r}")
            return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    kinds = {int: "a whole number >= 0", float: "a finite number", str: "a string", bool: "true or false"}
    expected = [o for o in options if o in kinds]
    if expected and not any(_is(o, value) for o in expected):
        raise ValueError(f"LanDiff config: '{path}' must be {' or '.join(kinds[o] for o in expected)}, got {value!r}")
    return float(value) if float in expected and not isinstance(value, bool) and isinstance(value, int) else value


def _is(kind, value) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and value >= 0
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)
