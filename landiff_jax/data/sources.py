"""Where training examples come from before they are written to shards (`records.write_dataset`).

A source has a `stage`, the `schema` of its examples, `meta` (recorded in dataset.json) and
`examples(start, count)`, which yields examples `start .. start+count-1` and must give the same
examples every time it is asked (an interrupted shard is redone from it). The synthetic sources
below let the LM train before any video is prepared (`SyntheticLM`) and the VAE train on clips of
the synthetic world (`SyntheticClips`). Videos (`clips`) become the examples of
several stages at once through the frozen models (`prepare.StageExamples`, one dataset per stage
from one computation, written by `records.write_datasets`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from landiff_jax.data import records, synthetic
from landiff_jax.lm.config import LMConfig
from landiff_jax.lm.layout import num_codes


class Source(Protocol):
    stage: str

    @property
    def schema(self) -> dict[str, records.Field]: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    def examples(self, start: int, count: int) -> Iterator[dict[str, np.ndarray]]: ...


def plan_dataset(source: Source, num_examples: int, examples_per_shard: int) -> records.DatasetInfo:
    """The dataset.json of `num_examples` examples of `source`; write it with
    `records.write_dataset(out, info, source.examples)`."""
    shards = records.plan_shards(source.stage, num_examples, examples_per_shard)
    return records.DatasetInfo(source.stage, source.schema, shards, source.meta)


@dataclasses.dataclass(frozen=True)
class SyntheticLM:
    """A small learnable world of LM examples, each a pure function of (seed, index).

    Every example belongs to one of `topics`; its text embedding is the topic's prototype plus
    noise over a random number of rows (the rest zero-padded and masked out), and its codes are
    the topic's code sequence with a fraction `code_noise` replaced by random codes. A model
    that reads the text can thus predict the codes far better than chance.
    """

    codebook_size: int
    frames: int  # semantic frames per clip (one count per dataset)
    codes: int  # codes per clip: lm.layout.num_codes(frames, ...)
    max_text: int
    text_dim: int
    seed: int = 0
    topics: int = 8
    code_noise: float = 0.1
    stage = "lm"

    def __post_init__(self):
        if min(self.codebook_size, self.frames, self.codes, self.max_text, self.text_dim, self.topics) < 1:
            raise ValueError(f"every size of the synthetic LM source must be >= 1: {self}")
        if not 0.0 <= self.code_noise <= 1.0:
            raise ValueError(f"code_noise must be in [0, 1], got {self.code_noise}")

    @classmethod
    def for_lm(cls, lm: LMConfig, *, frames: int, max_text: int, seed: int = 0, **kw) -> SyntheticLM:
        codes = num_codes(frames, lm.iframe_tokens, lm.pframe_tokens, lm.segment_length)
        return cls(lm.codebook_size, frames, codes, max_text, lm.text_dim, seed, **kw)

    @property
    def schema(self) -> dict[str, records.Field]:
        return records.lm_schema(self.max_text, self.text_dim, self.codes)

    @property
    def meta(self) -> dict[str, Any]:
        return {"source": "synthetic_lm", **dataclasses.asdict(self)}

    def _prototypes(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 0])
        text = rng.standard_normal((self.topics, self.text_dim), dtype=np.float32)
        codes = rng.integers(0, self.codebook_size, (self.topics, self.codes), dtype=np.int32)
        return text, codes

    def example(self, index: int, prototypes: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        text_protos, code_protos = prototypes or self._prototypes()
        rng = np.random.default_rng([self.seed, 1, index])
        topic = rng.integers(self.topics)
        length = rng.integers(1, self.max_text + 1)
        mask = np.arange(self.max_text) < length
        noise = 0.1 * rng.standard_normal((self.max_text, self.text_dim), dtype=np.float32)
        text = np.where(mask[:, None], text_protos[topic] + noise, np.float32(0.0))
        replace = rng.random(self.codes) < self.code_noise
        random_codes = rng.integers(0, self.codebook_size, self.codes, dtype=np.int32)
        return {
            "text_embedding": text.astype(np.float32),
            "text_mask": mask,
            "codes": np.where(replace, random_codes, code_protos[topic]).astype(np.int32),
            "frames": np.asarray(self.frames, np.int32),
            "motion_score": np.asarray(rng.random(), np.float32),
        }

    def examples(self, start: int, count: int) -> Iterator[dict[str, np.ndarray]]:
        prototypes = self._prototypes()
        for index in range(start, start + count):
            yield self.example(index, prototypes)


@dataclasses.dataclass(frozen=True)
class SyntheticClips:
    """VAE examples: clips of the synthetic world (clip i = `synthetic.sample_clip(i, seed, ...)`),
    as uint8 video [frames H W 3]."""

    frames: int  # video frames per clip
    height: int
    width: int
    seed: int = 0
    stage = "vae"

    def __post_init__(self):
        synthetic.check_size(self.frames, self.height, self.width)

    @property
    def schema(self) -> dict[str, records.Field]:
        return records.vae_schema(self.frames, self.height, self.width)

    @property
    def meta(self) -> dict[str, Any]:
        return {"source": "synthetic_clips", **dataclasses.asdict(self)}

    def examples(self, start: int, count: int) -> Iterator[dict[str, np.ndarray]]:
        for index in range(start, start + count):
            yield {"video": synthetic.sample_clip(index, self.seed, self.frames, self.height, self.width)[2]}
