"""Training examples on disk: a dataset directory of ArrayRecord shards plus `dataset.json`.

    DIR/dataset.json                       written last, atomically: the dataset exists once it does
    DIR/<stage>-00000-of-00004.array_record  one serialized example per record
    DIR/plan.json                          what is being written (lets an interrupted run resume)

An example is a dict of fixed-shape numpy arrays (the stage's schema, below). A record is a
small JSON header (each field's dtype, shape and offset) followed by the arrays' raw
little-endian bytes: nothing in a record is executed (no pickle), and decoding is a view of
the bytes (~0.1 ms for a full-size LM example of 4 MB, where `.npz` took ~16 ms: zip parsing
and CRC). Shards are written under a temporary name and renamed when complete; a resumed run
keeps the finished shards and redoes the rest.

ArrayRecord (not tensorstore/zarr): grain reads it natively (`ArrayRecordDataSource`) with
random access per record, which a global shuffle needs; one record holds one whole example of
mixed fields, where zarr would need one array per field and chunking tuned to the read pattern.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "landiff-jax examples"
VERSION = 1
DATASET_FILE = "dataset.json"
PLAN_FILE = "plan.json"
SUFFIX = ".array_record"
# one record per ArrayRecord chunk: a random read decodes only its own example; floats barely compress
WRITER_OPTIONS = "group_size:1,uncompressed"
DTYPES = ("bool", "uint8", "int32", "int64", "float16", "float32")
MAGIC = b"LDXR"  # a landiff-jax example record


class RecordError(ValueError):
    """A dataset, shard or example that cannot be used; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Field:
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise RecordError(f"dtype {self.dtype!r} is not one of {DTYPES}")

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype}


Schema = Mapping[str, Field]


# --- the stages' examples (the training-example contract) ---

def lm_schema(max_text: int, text_dim: int, num_codes: int) -> dict[str, Field]:
    """Semantic LM: Flan-T5 states right-padded with zeros, their mask, the codes of `frames`."""
    return {
        "text_embedding": Field((max_text, text_dim), "float32"),
        "text_mask": Field((max_text,), "bool"),
        "codes": Field((num_codes,), "int32"),
        "frames": Field((), "int32"),
        "motion_score": Field((), "float32"),
    }


def tokenizer_schema(frames: int, height: int, width: int, channels: int) -> dict[str, Field]:
    """Semantic tokenizer: Theia features of `frames` frames."""
    return {"features": Field((frames, height, width, channels), "float32")}


def diffusion_schema(latent: tuple[int, int, int, int], text_length: int, text_dim: int,
                     num_codes: int | None = None, features: tuple[int, int, int, int] | None = None
                     ) -> dict[str, Field]:
    """Control DiT: the VAE posterior of the clip, UNSCALED (`latent_mean`, `latent_std` [T H W C];
    training samples scale_factor · (mean + std · ε) each step), T5-v1.1 states, and the semantic
    condition (codes and/or Theia features; at least one)."""
    if num_codes is None and features is None:
        raise RecordError("a diffusion example needs its semantic condition: codes, features or both")
    schema = {"latent_mean": Field(tuple(latent), "float32"), "latent_std": Field(tuple(latent), "float32"),
              "text_embedding": Field((text_length, text_dim), "float32")}
    if num_codes is not None:
        schema["codes"] = Field((num_codes,), "int32")
    if features is not None:
        schema["features"] = Field(tuple(features), "float32")
    return schema


def vae_schema(frames: int, height: int, width: int) -> dict[str, Field]:
    """3D VAE: the RGB clip itself, `frames` frames of height × width."""
    return {"video": Field((frames, height, width, 3), "uint8")}


STAGES = ("lm", "tokenizer", "diffusion", "vae")


def check_lm_dataset(info: DatasetInfo, lm, where: str) -> int:
    """Check that an 'lm' dataset fits the LM config `lm` (text dim, codebook, frame layout);
    return its semantic frames per clip (`meta['frames']`, which LM datasets record)."""
    from landiff_jax.lm.layout import num_codes

    frames = info.meta.get("frames")
    if not isinstance(frames, int) or frames < 1:
        raise RecordError(f"{where}: an 'lm' dataset must record its semantic frames per clip in meta.frames")
    if info.meta.get("codebook_size", lm.codebook_size) != lm.codebook_size:
        raise RecordError(f"{where}: codes of a codebook of {info.meta['codebook_size']}, "
                          f"the LM has {lm.codebook_size}")
    max_text = info.fields["text_embedding"].shape[0] if "text_embedding" in info.fields else 0
    info.expect("lm", lm_schema(max_text, lm.text_dim, num_codes(frames, lm.iframe_tokens, lm.pframe_tokens,
                                                                  lm.segment_length)), where)
    return frames


# --- one example <-> one record ---

def check_example(example: Mapping[str, Any], schema: Schema, where: str) -> None:
    if set(example) != set(schema):
        raise RecordError(f"{where}: fields {sorted(example)} differ from the dataset's {sorted(schema)}")
    for name, field in schema.items():
        value = example[name]
        shape, dtype = tuple(np.shape(value)), str(np.asarray(value).dtype)
        if shape != field.shape or dtype != field.dtype:
            raise RecordError(f"{where}: field {name!r} is {dtype}{list(shape)}, "
                              f"expected {field.dtype}{list(field.shape)}")


def encode_example(example: Mapping[str, Any], schema: Schema, where: str = "example") -> bytes:
    """MAGIC, uint32 header length, JSON header {field: {dtype, shape, offset}}, raw little-endian bytes."""
    check_example(example, schema, where)
    header, chunks, offset = {}, [], 0
    for name, field in schema.items():
        data = np.ascontiguousarray(example[name], np.dtype(field.dtype).newbyteorder("<")).tobytes()
        header[name] = {"dtype": field.dtype, "shape": list(field.shape), "offset": offset}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + b"".join(chunks)


def decode_example(record: bytes, schema: Schema, where: str = "record") -> dict[str, np.ndarray]:
    """The example's arrays (read-only views of `record`), checked against `schema`."""
    try:
        if record[:len(MAGIC)] != MAGIC:
            raise ValueError("no example header")
        (size,) = struct.unpack_from("<I", record, len(MAGIC))
        start = len(MAGIC) + 4 + size
        example = {}
        for name, entry in json.loads(record[len(MAGIC) + 4:start]).items():
            if entry["dtype"] not in DTYPES:
                raise ValueError(f"field {name!r} has dtype {entry['dtype']!r}")
            dtype, shape = np.dtype(entry["dtype"]).newbyteorder("<"), tuple(entry["shape"])
            count = math.prod(shape)
            if start + entry["offset"] + count * dtype.itemsize > len(record):
                raise ValueError(f"field {name!r} runs past the record's end")
            example[name] = np.frombuffer(record, dtype, count, start + entry["offset"]).reshape(shape)
    except (ValueError, KeyError, TypeError, AttributeError, struct.error) as e:  # a damaged record: one line naming it
        raise RecordError(f"{where}: not a readable example ({type(e).__name__}: {e})") from e
    check_example(example, schema, where)
    return example


# --- the dataset directory ---

@dataclasses.dataclass(frozen=True)
class Shard:
    file: str
    start: int  # index of its first example in the dataset
    num_examples: int


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What `dataset.json` says. `meta` is free-form (source, seed, model sizes...); 'lm'
    datasets record `frames` (semantic frames per clip) and `codebook_size` in it."""

    stage: str
    fields: dict[str, Field]
    shards: tuple[Shard, ...]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_examples(self) -> int:
        return sum(s.num_examples for s in self.shards)

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "stage": self.stage,
            "fields": {name: f.to_json() for name, f in self.fields.items()},
            "num_examples": self.num_examples,
            "shards": [{"file": s.file, "num_examples": s.num_examples} for s in self.shards],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict, where: str) -> DatasetInfo:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise RecordError(f"{where}: not a {FORMAT!r} file of version {VERSION} "
                              f"(format {d.get('format')!r}, version {d.get('version')!r})")
        try:
            fields = {name: Field(tuple(int(n) for n in f["shape"]), f["dtype"]) for name, f in d["fields"].items()}
            shards, start = [], 0
            for s in d["shards"]:
                shards.append(Shard(s["file"], start, int(s["num_examples"])))
                start += shards[-1].num_examples
            info = cls(d["stage"], fields, tuple(shards), dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"{where}: malformed ({type(e).__name__}: {e})") from e
        if info.num_examples != d.get("num_examples"):
            raise RecordError(f"{where}: num_examples {d.get('num_examples')} differs from its shards' "
                              f"total {info.num_examples}")
        return info

    def shard_of(self, index: int) -> tuple[Shard, int]:
        """The shard holding example `index`, and the example's position in it."""
        for shard in self.shards:
            if index < shard.start + shard.num_examples:
                return shard, index - shard.start
        raise IndexError(f"example {index} is past the dataset's {self.num_examples}")

    def expect(self, stage: str, fields: Schema, where: str) -> None:
        """Raise a one-line error unless this dataset holds `stage` examples of exactly `fields`."""
        if self.stage != stage:
            raise RecordError(f"{where}: holds {self.stage!r} examples, expected {stage!r}")
        for name, field in fields.items():
            have = self.fields.get(name)
            if have is None:
                raise RecordError(f"{where}: has no field {name!r} (fields: {sorted(self.fields)})")
            if have != field:
                raise RecordError(f"{where}: field {name!r} is {have.dtype}{list(have.shape)}, "
                                  f"the config expects {field.dtype}{list(field.shape)}")


def read_info(path: str | os.PathLike) -> DatasetInfo:
    """Load `DIR/dataset.json` (or the file itself) and check that its shards are all there."""
    path = Path(path)
    file = path / DATASET_FILE if path.is_dir() else path
    if not file.is_file():
        raise RecordError(f"{file}: no dataset here (prepare one with tools/prepare_data.py)")
    try:
        d = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise RecordError(f"{file}: unreadable ({type(e).__name__}: {e})") from e
    info = DatasetInfo.from_json(d, str(file))
    for shard in info.shards:
        if not (file.parent / shard.file).is_file():
            raise RecordError(f"{file.parent / shard.file}: shard listed in {file} is missing")
    return info


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- writing ---

def plan_shards(stage: str, num_examples: int, examples_per_shard: int) -> tuple[Shard, ...]:
    if num_examples < 1 or examples_per_shard < 1:
        raise RecordError(f"need num_examples >= 1 and examples_per_shard >= 1, got {num_examples} "
                          f"and {examples_per_shard}")
    count = -(-num_examples // examples_per_shard)
    return tuple(Shard(f"{stage}-{k:05d}-of-{count:05d}{SUFFIX}", start, min(examples_per_shard, num_examples - start))
                 for k, start in enumerate(range(0, num_examples, examples_per_shard)))


def shard_is_complete(path: Path, shard: Shard) -> bool:
    from array_record.python.array_record_module import ArrayRecordReader

    if not path.is_file():
        return False
    try:
        reader = ArrayRecordReader(str(path))
        try:
            return reader.num_records() == shard.num_examples
        finally:
            reader.close()
    except Exception:  # a damaged file is not complete: it is redone
        return False


def write_shard(path: Path, examples: Iterable[Mapping[str, Any]], shard: Shard, schema: Schema,
                on_example: Callable[[], None] = lambda: None) -> None:
    """Write `shard.num_examples` examples to `path` through a temporary file, renamed when complete."""
    write_shards([path], ((example,) for example in examples), shard, [schema], on_example)


def write_shards(paths: Sequence[Path], examples: Iterable[Sequence[Mapping[str, Any]]], shard: Shard,
                 schemas: Sequence[Schema], on_example: Callable[[], None] = lambda: None) -> None:
    """The same shard of several datasets at once: `examples` yields one example per path (in
    order), computed once for all. Each file is written under a temporary name and renamed when
    every file is complete."""
    from array_record.python.array_record_module import ArrayRecordWriter

    tmps = [path.with_name(path.name + ".tmp") for path in paths]
    writers = [ArrayRecordWriter(str(tmp), WRITER_OPTIONS) for tmp in tmps]
    written = 0
    try:
        for row in examples:
            if len(row) != len(paths):
                raise RecordError(f"{paths[0]}: the source gave {len(row)} examples per row, expected {len(paths)}")
            for writer, path, schema, example in zip(writers, paths, schemas, row):
                writer.write(encode_example(example, schema, f"{path.name} example {written}"))
            written += 1
            on_example()
    finally:
        for writer in writers:
            writer.close()
    if written != shard.num_examples:
        for tmp in tmps:
            tmp.unlink()
        raise RecordError(f"{paths[0]}: the source gave {written} examples, expected {shard.num_examples}")
    for tmp in tmps:
        if not shard_is_complete(tmp, shard):
            raise RecordError(f"{tmp}: written but does not read back {shard.num_examples} records")
    for tmp, path in zip(tmps, paths):
        os.replace(tmp, path)


def start_dataset(out: Path, info: DatasetInfo) -> bool:
    """Get `out` ready to receive `info`'s shards: False if it already holds exactly that dataset
    (nothing to do); raise if it holds anything else than an unfinished dataset of the same plan."""
    plan = json.dumps(info.to_json(), indent=1, sort_keys=True)
    if (out / DATASET_FILE).exists():
        if read_info(out).to_json() != info.to_json():
            raise RecordError(f"{out / DATASET_FILE}: {out} already holds a dataset of other settings")
        return False
    if (out / PLAN_FILE).is_file():
        if (out / PLAN_FILE).read_text() != plan:
            raise RecordError(f"{out / PLAN_FILE}: {out} holds a dataset being written with other settings "
                              "(same stage, source, sizes, seed and shard size are needed to resume)")
    elif out.exists() and any(out.iterdir()):
        raise RecordError(f"{out}: exists and is not an unfinished dataset of the same settings")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / PLAN_FILE, plan)
    return True


def finish_dataset(out: Path, info: DatasetInfo) -> None:
    atomic_write_text(out / DATASET_FILE, json.dumps(info.to_json(), indent=1))
    (out / PLAN_FILE).unlink()


def write_dataset(out: str | os.PathLike, info: DatasetInfo, examples: Callable[[int, int], Iterable[Mapping]],
                  on_example: Callable[[], None] = lambda: None,
                  on_shard: Callable[[Shard, bool], None] = lambda shard, skipped: None) -> DatasetInfo:
    """Write every shard of `info` into `out` (`examples(start, count)` yields a shard's examples),
    then `dataset.json`. Resumable: a run into a directory holding the same plan keeps its
    complete shards (`on_shard(shard, skipped=True)`) and rewrites the others; a run into a
    complete dataset of the same plan does nothing."""
    write_datasets([(out, info)], lambda start, count: ((e,) for e in examples(start, count)), on_example, on_shard)
    return info


def write_datasets(datasets: Sequence[tuple[str | os.PathLike, DatasetInfo]],
                   examples: Callable[[int, int], Iterable[Sequence[Mapping]]],
                   on_example: Callable[[], None] = lambda: None,
                   on_shard: Callable[[Shard, bool], None] = lambda shard, skipped: None) -> None:
    """`write_dataset` for several datasets of the same examples (e.g. one per stage, from the
    same clips), all planned with the same shards: `examples(start, count)` yields, per example,
    one example per dataset (in order), so each is computed once. A shard complete in every
    dataset is kept; otherwise it is computed again and written where it is incomplete."""
    datasets = [(Path(out), info) for out, info in datasets]
    ranges = {tuple((s.start, s.num_examples) for s in info.shards) for _, info in datasets}
    if len(ranges) != 1:
        raise RecordError(f"datasets {[str(out) for out, _ in datasets]} are not planned with the same shards")
    active = [i for i, (out, info) in enumerate(datasets) if start_dataset(out, info)]  # not complete already
    if not active:
        return
    for k, shard in enumerate(datasets[0][1].shards):
        paths = {i: datasets[i][0] / datasets[i][1].shards[k].file for i in active}
        missing = [i for i in active if not shard_is_complete(paths[i], shard)]
        if not missing:
            on_shard(shard, True)
            continue
        rows = ([row[i] for i in missing] for row in examples(shard.start, shard.num_examples))
        write_shards([paths[i] for i in missing], rows, shard, [datasets[i][1].fields for i in missing], on_example)
        on_shard(shard, False)
    for i in active:
        finish_dataset(*datasets[i])


# --- reading ---

class RecordSource:
    """grain random-access source over a dataset directory: item i is example i, decoded and
    checked against `dataset.json` (a mismatch names the shard, the example and the field).
    Its arrays are read-only views of the record (the pipeline's batches are fresh copies)."""

    def __init__(self, path: str | os.PathLike):
        import grain

        self.path = Path(path)
        self.info = read_info(self.path)
        self._records = grain.sources.ArrayRecordDataSource([str(self.path / s.file) for s in self.info.shards])
        if len(self._records) != self.info.num_examples:
            raise RecordError(f"{self.path}: shards hold {len(self._records)} records, "
                              f"{DATASET_FILE} says {self.info.num_examples}")

    def __len__(self) -> int:
        return self.info.num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        shard, position = self.info.shard_of(int(index))
        return decode_example(self._records[index], self.info.fields,
                              f"{self.path / shard.file} example {position}")
