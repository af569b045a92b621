"""Whole-release conversion: the released `ckpts/LanDiff` tree (+ a Flan-T5 directory) into one
converted checkpoint (`checkpoint.py`). The one place that imports every model's converter and
original-config parser.

The published md5 sums (the original repository's `ckpts/CHECKSUM.md5`) ship with the package as
`landiff_jax/CHECKSUM.md5`; a tree that carries its own `CHECKSUM.md5` is checked against that one
instead, and every file whose sum there differs from the published one is reported (and recorded
in the converted config under "checksums"): such a tree is not the published release. The Flan-T5
directory is not part of the release: its safetensors files are checked against the sizes their
headers declare, and against a user's md5 list (`flan_t5_checksums`) when given.

Safety of the output: `out` is locked (`.<out>.lock`) for the whole conversion, the components
are written into a hidden temporary sibling `.<out>.tmp-*` renamed at the end; SIGTERM and errors
remove it, and the next conversion to the same `out` removes one a SIGKILL left behind.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from landiff_jax import checkpoint, diffusion, lm, text, tokenizer, vae
from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError, read_latest, read_safetensors, read_torch
from landiff_jax.convert.table import ConversionError
from landiff_jax.diffusion import original as diffusion_original
from landiff_jax.diffusion.convert import POS_EMBEDDING
from landiff_jax.files import Lock, describe_os_error, file_digest, nearest_existing, stale_temporaries, temp_sibling
from landiff_jax.lm.original import lm_config
from landiff_jax.text.original import t5_config
from landiff_jax.tokenizer import original as tokenizer_original
from landiff_jax.vae.config import VAEConfig
from landiff_jax.vae.original import vae_config

PUBLISHED_CHECKSUMS = Path(__file__).with_name("CHECKSUM.md5")  # package data (pyproject.toml)
HF_T5_FILES = ("config.json", "spiece.model")


@dataclasses.dataclass(frozen=True)
class ReleasePaths:
    """Where each component's files are inside a released tree (+ the separate Flan-T5 dir)."""

    root: Path
    flan_t5: Path

    @property
    def llm(self) -> Path:
        return self.root / "llm" / "model.safetensors"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer" / "model.safetensors"

    @property
    def diffusion(self) -> Path:
        return self.root / "diffusion"

    @property
    def base_dit(self) -> Path:
        return self.root / "CogVideoX-2b-sat" / "transformer"

    @property
    def vae(self) -> Path:
        return self.root / "CogVideoX-2b-sat" / "vae" / "3d-vae.pt"

    @property
    def t5_v1_1(self) -> Path:
        return self.root / "CogVideoX-2b-sat" / "t5-v1_1-xxl"

    def release_files(self) -> list[Path]:
        """Every file of the released tree that the conversion reads."""
        required = [self.llm, self.tokenizer, self.vae]
        for sat_dir in (self.diffusion, self.base_dit):
            required.append(sat_dir / "latest")
            latest = sat_dir / "latest"
            if latest.exists():
                required.append(sat_dir / latest.read_text().strip() / "mp_rank_00_model_states.pt")
        return required + hf_t5_files(self.t5_v1_1)

    def missing_files(self) -> list[Path]:
        """Every required file that is absent (all of them, not just the first)."""
        return [p for p in self.release_files() + hf_t5_files(self.flan_t5) if not p.exists()]

    def safetensors_files(self) -> list[Path]:
        return [self.llm, self.tokenizer, *safetensors_files(self.t5_v1_1), *safetensors_files(self.flan_t5)]


def hf_t5_files(hf_dir: Path) -> list[Path]:
    """The files of a Hugging Face T5 directory that the conversion reads."""
    return [hf_dir / name for name in HF_T5_FILES] + safetensors_files(hf_dir)


def safetensors_files(hf_dir: Path) -> list[Path]:
    """`model.safetensors`, or every shard `model.safetensors.index.json` names."""
    index = hf_dir / "model.safetensors.index.json"
    if not index.exists():
        return [hf_dir / "model.safetensors"]
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index}: not a safetensors index (a JSON with a 'weight_map'): {e}") from e
    return [hf_dir / shard for shard in shards]


def check_safetensors_size(path: Path) -> str | None:
    """A problem when `path`'s size differs from what its header declares (truncated or padded)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if header_len > size - 8:
                return f"{path}: header length {header_len} exceeds the file ({size} bytes)"
            header = json.loads(f.read(header_len))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{path}: unreadable safetensors header ({e})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        return f"{path}: {size} bytes, its header declares {expected} (truncated or damaged)"
    return None


def read_checksums(path: Path) -> dict[str, str]:
    """`<md5>  ./<relative path>` lines -> {relative path: md5}."""
    sums = {}
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not a checksum list ('<md5>  <path>' lines of text): {e.reason} at byte "
                              f"{e.start}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise CheckpointError(f"{path}:{number}: not a '<md5>  <path>' line: {line!r}")
        sums[parts[1].strip().removeprefix("./")] = parts[0].lower()
    return sums


def verify_checksums(root: Path, checksum_file: Path | None = None, progress: Callable[[str], None] = print,
                     label: str = "release", required: list[Path] = ()) -> tuple[Path, list[str]]:
    """Check every file the checksum list names; raise naming each missing or corrupted file, and
    each of the `required` files (those the conversion reads) that the list does not name.

    Returns the checksum file used (`checksum_file`, else the tree's own `CHECKSUM.md5`, else the
    published sums shipped with the package) and, when that is not the published list, the files
    whose sums there differ from the published ones (each also reported through `progress`).
    """
    if checksum_file is None:
        own = root / "CHECKSUM.md5"
        checksum_file = own if own.exists() else PUBLISHED_CHECKSUMS
    if not checksum_file.is_file():
        raise CheckpointError(f"checksum list not found: {checksum_file}")
    sums = read_checksums(checksum_file)
    unnamed = [str(p.relative_to(root)) for p in required if str(p.relative_to(root)) not in sums]
    if unnamed:
        raise CheckpointError(f"the checksum list {checksum_file} does not name {len(unnamed)} file(s) the "
                              f"conversion reads, so they cannot be verified: {', '.join(unnamed[:4])}"
                              + (", ..." if len(unnamed) > 4 else "") + " (give a complete list, or --noverify)")
    differing = []
    if label == "release" and checksum_file.resolve() != PUBLISHED_CHECKSUMS.resolve():
        published = read_checksums(PUBLISHED_CHECKSUMS)
        differing = sorted(rel for rel, md5 in sums.items() if published.get(rel, md5) != md5)
        if differing:
            progress(f"WARNING: {checksum_file} differs from the published sums ({PUBLISHED_CHECKSUMS}) for "
                     f"{len(differing)} file(s): this tree is not the published release; verifying against "
                     f"{checksum_file}")
            for rel in differing:
                progress(f"WARNING:   differs from the published list: {rel}")
    bad = []
    for number, (rel, expected) in enumerate(sorted(sums.items()), 1):
        path = root / rel
        if not path.exists():
            bad.append(f"missing: {path}")
            continue
        progress(f"  md5 [{number}/{len(sums)}] {rel}")
        actual = file_digest(path, "md5")
        if actual != expected:
            bad.append(f"checksum mismatch: {path} (md5 {actual}, expected {expected} from {checksum_file})")
    if bad:
        raise CheckpointError(f"{label} verification failed:\n  " + "\n  ".join(bad))
    return checksum_file, differing


def check_output(out: Path) -> None:
    """`out` does not exist and can be created: its nearest existing ancestor is a writable directory."""
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"output already exists (remove it first): {out}")
    existing = nearest_existing(out.parent)
    if not existing.is_dir():
        raise CheckpointError(f"cannot create {out}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CheckpointError(f"cannot create {out}: {existing} is not writable")


def _placeholder(shape, dtype) -> np.ndarray:
    """A zero-stride array of `shape`: a converter's checks see the shape; no memory is used."""
    return np.broadcast_to(np.zeros((), dtype), tuple(shape))


def safetensors_shapes(path: Path) -> dict:
    """{key: placeholder} from the header(s) of a .safetensors file or an HF directory."""
    from safetensors import safe_open

    out = {}
    for file in safetensors_files(path) if path.is_dir() else [path]:
        try:
            with safe_open(str(file), framework="numpy") as f:
                for key in f.keys():
                    info = f.get_slice(key)
                    kind = info.get_dtype()
                    out[key] = _placeholder(info.get_shape(), "float32" if kind.startswith(("F", "BF")) else "int64")
        except Exception as e:  # a damaged header
            raise CheckpointError(f"cannot read the safetensors header of {file}: {e}") from e
    return out


def torch_shapes(path: Path, top_key: str, keep: tuple[str, ...] = ()) -> dict:
    """{key: placeholder} of a torch state dict, memory-mapped (its data is not read), except the
    keys ending with one of `keep` (values a converter checks), read in full."""
    return {k: np.asarray(v) if k.endswith(keep) else _placeholder(v.shape, v.dtype)
            for k, v in read_torch(path, top_key, mmap=True).items()}


def conversion_steps(paths: ReleasePaths, cfg: LanDiffConfig):
    """(component, read(shapes_only) -> its state dict(s), convert(state dicts) -> (params, report))."""
    def sat(directory: Path, shapes_only: bool):
        file = read_latest(directory)
        return torch_shapes(file, "module", keep=(POS_EMBEDDING,)) if shapes_only else read_torch(file, "module")

    st = lambda path: lambda shapes_only: safetensors_shapes(path) if shapes_only else read_safetensors(path)  # noqa
    return [
        ("t5_lm", st(paths.flan_t5), lambda sd: text.convert_params(sd, cfg.t5_lm, source=str(paths.flan_t5))),
        ("t5_dit", st(paths.t5_v1_1), lambda sd: text.convert_params(sd, cfg.t5_dit, source=str(paths.t5_v1_1))),
        ("lm", st(paths.llm), lambda sd: lm.convert_params(sd, cfg.lm, source=str(paths.llm))),
        ("tokenizer", st(paths.tokenizer),
         lambda sd: tokenizer.convert_params(sd, cfg.tokenizer, source=str(paths.tokenizer))),
        ("diffusion", lambda shapes_only: (sat(paths.base_dit, shapes_only), sat(paths.diffusion, shapes_only)),
         lambda sds: diffusion.convert_params(*sds, cfg.dit, cfg.tokenizer,
                                              source=f"{paths.base_dit} + {paths.diffusion}")),
        ("vae", lambda shapes_only: torch_shapes(paths.vae, "state_dict") if shapes_only
         else read_torch(paths.vae, "state_dict"), lambda sd: vae.convert_params(sd, cfg.vae, source=str(paths.vae))),
    ]


def check_components(steps, progress: Callable[[str], None] = print) -> int:
    """Every component's keys and shapes against the config, from headers and memory-mapped
    state dicts, through the real converters on zero-stride placeholders; one error listing every
    component's problems. Returns the bytes the converted parameters take."""
    import jax

    problems, total = [], 0
    for name, read, convert in steps:
        progress(f"  checking {name} keys and shapes")
        try:
            params, _ = convert(read(True))
            total += sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(params))
            del params
        except ConversionError as e:
            problems.append(f"[{name}] {e}")
    if problems:
        raise ConversionError([p for page in problems for p in page.splitlines()],
                              f"{len(problems)} component(s) against the config")
    return total


def check_free_space(out: Path, needed: int) -> None:
    existing = nearest_existing(out.parent)
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise CheckpointError(f"not enough space for {out}: the converted parameters need {needed / 2**20:.1f} MiB, "
                              f"{free / 2**20:.1f} MiB are free on {existing}")


def _write_refused(e: BaseException) -> str | None:
    """Why the file system refused a write, when anywhere in the exception's chain (tensorstore
    reports it in its message): the disk is full, or a file exceeds the file-size limit."""
    while e is not None:
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(e):
            return "no space left on device"
        if getattr(e, "errno", None) == errno.EFBIG or "File too large" in str(e):
            return "a file exceeds the file system's or the process's file-size limit (ulimit -f)"
        e = e.__cause__ or e.__context__
    return None


def config_from_original(config: Mapping[str, Any], t5_lm: Mapping[str, Any],
                         t5_dit: Mapping[str, Any]) -> LanDiffConfig:
    """Our config from the original's configuration as the e2e fixture's `meta.json` holds it
    (`tokenizer_build_tokenizer_overrides` or `tokenizer`, `llm`, `diffusion.model`) and the two
    T5 directories' `config.json` dicts."""
    t5_lm_cfg, t5_dit_cfg = t5_config(t5_lm), t5_config(t5_dit)
    if "tokenizer_build_tokenizer_overrides" in config:
        overrides = config["tokenizer_build_tokenizer_overrides"]
        tokenizer_cfg = tokenizer_original.tokenizer_config_from_overrides(overrides)
    else:
        tokenizer_cfg = tokenizer_original.tokenizer_config(config["tokenizer"])
    llm = dict(config["llm"])
    if isinstance(llm["tokenizer"].get("tokenizer"), str):  # "same as config.tokenizer"
        llm["tokenizer"] = {**llm["tokenizer"], "tokenizer": config["tokenizer"]}
    model = config["diffusion"]["model"]
    vae_cfg = vae_config(model, scale_factor=float(model.get("scale_factor", VAEConfig().scale_factor)))
    lm_cfg = lm_config(llm, text_dim=t5_lm_cfg.d_model)
    dit_cfg, sampler_cfg = diffusion_original.dit_config(model), diffusion_original.sampler_config(model)
    return LanDiffConfig(t5_lm_cfg, t5_dit_cfg, tokenizer_cfg, lm_cfg, dit_cfg, sampler_cfg, vae_cfg).check()


def _convert_locked(paths: ReleasePaths, out: Path, cfg: LanDiffConfig, verify: bool,
                    checksum_file: Path | None, flan_t5_checksums: Path | None, compress: bool,
                    progress: Callable[[str], None]) -> None:
    """convert_release's work under the lock: stale temporaries, md5 sums, headers, conversion."""
    for stale in stale_temporaries(out):
        progress(f"removing {stale} (left by an interrupted conversion)")
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    check_output(out)  # another process may have finished it meanwhile
    record: dict[str, Any] = {"verified": False}
    if verify:
        progress(f"verifying md5 sums of {paths.root}")
        used, differing = verify_checksums(paths.root, checksum_file, progress,
                                           required=paths.release_files())
        progress(f"  all files match {used}")
        record = {"verified": True, "list": str(used), "differs_from_published": differing}
        if flan_t5_checksums is not None:
            used_t5, _ = verify_checksums(paths.flan_t5, flan_t5_checksums, progress, label="Flan-T5",
                                          required=safetensors_files(paths.flan_t5))  # at least its weights
            progress(f"  Flan-T5 files match {used_t5}")
            record["flan_t5_list"] = str(used_t5)
        sizes = [p for p in map(check_safetensors_size, paths.safetensors_files()) if p]
        if sizes:
            raise CheckpointError("safetensors files of the wrong size:\n  " + "\n  ".join(sizes))
    steps = conversion_steps(paths, cfg)
    progress("checking every component's keys and shapes against the config (headers only)")
    needed = check_components(steps, progress) + (1 << 20)  # + tokenizers, manifests, orbax metadata
    check_free_space(out, needed)
    tmp = temp_sibling(out, directory=True)
    try:
        for number, (name, read, convert) in enumerate(steps, 1):
            progress(f"[{number}/{len(steps)}] converting {name}")
            params, report = convert(read(False))
            progress(f"  {report.summary()}")
            checkpoint.save_component(tmp, name, params, compress)
            del params
        for component, sub in checkpoint.TEXT_DIRS.items():
            src = paths.flan_t5 if component == "t5_lm" else paths.t5_v1_1
            checkpoint.copy_text_tokenizer(src, tmp / "text" / sub)
        checkpoint.write_config(tmp, cfg, converted_from=str(paths.root.resolve()), checksums=record)
        tmp.chmod(0o755)
        tmp.rename(out)
    except Exception as e:
        refused = _write_refused(e)
        if refused:
            free = shutil.disk_usage(out.parent).free
            raise CheckpointError(f"{refused} writing {out} ({free / 2**20:.1f} MiB free); "
                                  f"nothing was written") from None
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise CheckpointError(f"cannot write {out}: {describe_os_error(e)}") from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def convert_release(release: Path, flan_t5: Path, out: Path, config: LanDiffConfig | Mapping[str, Any], *,
                    dtype: str = "float32", verify: bool = True, checksum_file: Path | None = None,
                    flan_t5_checksums: Path | None = None, compress: bool = False,
                    progress: Callable[[str], None] = print) -> Path:
    """Convert a released tree (+ the Flan-T5 dir) into one converted checkpoint at `out`.

    `config`: our LanDiffConfig (a preset or `configs/*.py`), or the original's configuration
    (a dict, parsed with the two T5 directories' config.json by `config_from_original`).
    Everything is checked before anything heavy: `out` can be created, every missing file
    (shards included) is listed at once, then the md5 sums and the safetensors sizes (unless
    `verify` is False; `flan_t5_checksums`: an md5 list of the Flan-T5 directory). Components are
    converted and written one at a time into a temporary sibling directory that is renamed to
    `out` only when all succeeded (see the module docstring); `compress`: zstd-compressed
    parameter files (smaller, slower to restore: `checkpoint.save_component`).
    """
    paths = ReleasePaths(Path(release), Path(flan_t5))
    out = Path(out)
    check_output(out)
    for name, directory in (("--release", paths.root), ("--flan_t5", paths.flan_t5)):
        if not directory.is_dir():
            raise CheckpointError(f"{name} directory not found: {directory}")
    missing = paths.missing_files()
    if missing:
        raise CheckpointError("the release is incomplete; missing:\n  " + "\n  ".join(map(str, missing)))
    if not isinstance(config, LanDiffConfig):
        def hf_config(d: Path) -> dict:
            try:
                return json.loads((d / "config.json").read_text())
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{d / 'config.json'}: not valid JSON ({e})") from e
        try:
            config = config_from_original(config, hf_config(paths.flan_t5), hf_config(paths.t5_v1_1))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"the original configuration is not of the expected form: "
                                  f"{type(e).__name__}: {e}") from e
    cfg = config.with_dtype(dtype)

    made = None  # the topmost directory this conversion creates (the lock file's), removed if it fails
    for ancestor in out.parents:
        if ancestor.exists():
            break
        made = ancestor
    try:
        with Lock(out):  # from here on, this process is the one writing `out`
            _convert_locked(paths, out, cfg, verify, checksum_file, flan_t5_checksums, compress, progress)
    finally:
        if made is not None and made.exists() and not out.exists() and not any(
                p.is_file() for p in made.rglob("*")):
            shutil.rmtree(made, ignore_errors=True)
    progress(f"wrote {out}")
    return out
