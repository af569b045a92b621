"""The converted checkpoint: one directory holding every component's params and our own config.

    <dir>/landiff_config.json     LanDiffConfig.to_dict() (versioned plain dict) + where it came from
    <dir>/params/<component>/     an orbax PyTree checkpoint per component (t5_lm, t5_dit, lm,
                                  tokenizer, diffusion, vae), written one at a time
    <dir>/text/{flan_t5,t5_v1_1}/ the two T5 tokenizers (spiece.model and its small json files)
    <dir>/params/<component>.sha256.json, <dir>/text/<name>.sha256.json
                                  size and sha256 of every file of that directory, written with it

Loading verifies a component against its manifest: `verify='cheap'` (default) checks every
file's size and hashes the files up to CHEAP_HASH_BYTES (64 MiB: every file of a tiny checkpoint,
the metadata and small arrays of a full one; a flipped byte inside a large data file needs
'full'), 'full' hashes everything, 'none' nothing. Restored arrays are checked against the
shapes the config gives.

`release.convert_release` writes it (atomically: a temporary sibling directory renamed at the
end); `load_config` reads the config (one JSON, parsed once) and `load_component` one
component back, optionally only the parameters a job uses (orbax partial restore), and
optionally straight into device arrays of given shardings (each device reads its own shard;
no host copy of the whole component); `load_components` several at once, one thread each.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import jax
import numpy as np

from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError
from landiff_jax.files import file_digest

COMPONENTS = ("t5_lm", "t5_dit", "lm", "tokenizer", "diffusion", "vae")
TEXT_DIRS = {"t5_lm": "flan_t5", "t5_dit": "t5_v1_1"}
TOKENIZER_FILES = ("spiece.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "config.json")
CONFIG_FILE = "landiff_config.json"
MANIFEST_SUFFIX = ".sha256.json"
VERIFY_LEVELS = ("none", "cheap", "full")
CHEAP_HASH_BYTES = 1 << 26
RECONVERT = ("re-convert the release with this version: "
             "python tools/convert.py --release ... --flan_t5 ... --out NEW_DIR")


def copy_text_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    write_manifest(dst)


def save_component(directory: Path, name: str, params, compress: bool = False) -> None:
    """One component's params under directory/params/name, with its manifest. Uncompressed unless
    `compress` (zstd): restoring is CPU-bound, and decompressing costs about as much CPU as the
    rest of a restore (2 CPU cores: 3.0–3.6 against 1.3–2.1 CPU-s per GB of bf16 weights), for
    files ≈ 22 % smaller."""
    import orbax.checkpoint as ocp

    path = directory / "params" / name
    with storage_output_held():
        ocp.PyTreeCheckpointer(use_compression=compress).save(path.absolute(), params)
    write_manifest(path)


_HOLDING = threading.Lock()  # taken by the one `storage_output_held` in effect


@contextlib.contextmanager
def storage_output_held():
    """In quiet mode (absl verbosity under INFO: `cli.quiet_libraries`), hold back what the
    storage libraries print while a write runs: orbax's absl log records and the tracebacks its
    worker threads print to stderr when a write fails (disk full: ~150 lines). On success they
    are shown as usual; on failure dropped: the raised exception carries the cause, which the
    caller reports in one line (or as a traceback if unexpected). A failed write's operations still
    in flight report later (tracebacks of callbacks into orbax's closed event loop): the failure
    waits until they have been quiet for half a second (at most SETTLE_SECONDS). Restores too:
    orbax warns about a damaged checkpoint before it raises. --verbose holds nothing.

    What it changes is process-wide (the absl logger's filters, sys.stderr), so it is held once:
    entered again while in effect, from any thread (the restores of `load_components`), it holds
    nothing more, and the one in effect covers that output too."""
    from absl import logging

    if logging.get_verbosity() >= logging.INFO or not _HOLDING.acquire(blocking=False):
        yield
        return
    logger, records = logging.get_absl_logger(), []

    def hold(record) -> bool:
        records.append(record)
        return False

    logger.addFilter(hold)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            try:
                yield
            except BaseException:
                _settle(printed)
                raise
    finally:
        logger.removeFilter(hold)
        _HOLDING.release()
    for record in records:  # reached only on success
        logger.handle(record)
    sys.stderr.write(printed.getvalue())


SETTLE_SECONDS = 5.0


def _settle(printed: io.StringIO) -> None:
    """Wait until nothing more was printed for 0.5 s (at most SETTLE_SECONDS)."""
    deadline, size, quiet_since = time.monotonic() + SETTLE_SECONDS, -1, time.monotonic()
    while time.monotonic() < deadline:
        if len(printed.getvalue()) != size:
            size, quiet_since = len(printed.getvalue()), time.monotonic()
        elif time.monotonic() - quiet_since >= 0.5:
            return
        time.sleep(0.1)


# ---- integrity ------------------------------------------------------------------------------
def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def write_manifest(path: Path) -> None:
    """{relative file: [size, sha256]} of every file below the directory `path`, beside it."""
    files = {str(f.relative_to(path)): [f.stat().st_size, file_digest(f, "sha256")]
             for f in sorted(path.rglob("*")) if f.is_file()}
    manifest_path(path).write_text(json.dumps(files, indent=0))


def verify_directory(path: Path, level: str = "cheap", what: str | None = None) -> bool:
    """Check the directory `path` against its manifest (see the module docstring for `level`);
    raise CheckpointError naming `what` and every bad file. False when there is no manifest (a
    checkpoint written before manifests); a manifest missing beside others' was removed: an error."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {level!r}")
    what = what or str(path)
    manifest = manifest_path(path)
    if level == "none":
        return True
    if not manifest.exists():
        others = sorted(p.name for p in path.parent.glob(f"*{MANIFEST_SUFFIX}"))
        if others:
            raise CheckpointError(f"{what} has no checksum manifest ({manifest.name}) while {', '.join(others)} "
                                  f"exist beside it: it was removed, and the files cannot be checked; {RECONVERT}")
        return False
    try:
        expected = json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{what}: its checksum manifest {manifest} is not valid JSON ({e})") from e
    bad = []
    present = {str(f.relative_to(path)) for f in path.rglob("*") if f.is_file()}
    bad += [f"unexpected file {rel}" for rel in sorted(present - set(expected))]
    for rel, (size, digest) in sorted(expected.items()):
        file = path / rel
        if rel not in present:
            bad.append(f"missing {rel}")
        elif file.stat().st_size != size:
            bad.append(f"{rel} has {file.stat().st_size} bytes, {size} were written")
        elif (level == "full" or size <= CHEAP_HASH_BYTES) and file_digest(file, "sha256") != digest:
            bad.append(f"{rel} differs from what was written (sha256)")
    if bad:
        raise CheckpointError(f"{what} is corrupted ({path}): " + "; ".join(bad[:5])
                              + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "") + f"; {RECONVERT}")
    return True


def verify(directory: str | Path, level: str = "cheap", components=COMPONENTS) -> None:
    """Every component's params and both text tokenizers against their manifests (a component
    without one, from an older landiff-jax: a warning)."""
    directory = Path(directory)
    for name in components:
        path = directory / "params" / name
        if path.is_dir() and not verify_directory(path, level, f"component '{name}'"):
            warn_unchecked(path)
    for sub in TEXT_DIRS.values():
        verify_directory(directory / "text" / sub, level, f"text tokenizer '{sub}'")


def warn_unchecked(path: Path) -> None:
    warnings.warn(f"{path}: no checksum manifest (converted by an older landiff-jax); its integrity is not checked",
                  stacklevel=3)


def write_config(directory: Path, cfg: LanDiffConfig, converted_from: str, checksums: dict | None = None) -> None:
    """checksums: how the release was verified ({'verified', 'list', 'differs_from_published', ...})."""
    record = {**cfg.to_dict(), "converted_from": converted_from}
    if checksums is not None:
        record["checksums"] = checksums
    (directory / CONFIG_FILE).write_text(json.dumps(record, indent=1))


def load_config(directory: str | Path, dtype: str | None = None) -> LanDiffConfig:
    """The checkpoint's LanDiffConfig (computed in `dtype`; default: as stored).

    A checkpoint written before configs were stored as our own dict holds the recipe instead:
    {'preset': name, 'dtype'} is migrated; {'original': ...} is refused with how to re-convert."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"not a converted LanDiff checkpoint (no {CONFIG_FILE}): {directory}")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if "version" not in record and "preset" in record:  # the old recipe of a named preset
        cfg = LanDiffConfig.preset(record["preset"]).with_dtype(record.get("dtype", "float32"))
    elif "version" not in record and "original" in record:
        raise CheckpointError(f"{path}: written by an older landiff-jax (it stores the original's configuration, "
                              f"not ours); {RECONVERT}")
    else:
        try:
            cfg = LanDiffConfig.from_dict(record)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: {e}; {RECONVERT}") from e
    return cfg if dtype is None else cfg.with_dtype(dtype)


def load_component(directory: str | Path, name: str, abstract: Any = None, verify: str = "cheap",
                   shardings: Any = None, dtype: Any = None):
    """One component's params from a converted checkpoint directory, verified against its
    manifest (`verify`: see the module docstring): host numpy arrays, or with `shardings`
    jax.Arrays placed by them.

    abstract: a subtree of its params' shapes (from the config): only those parameters are read,
    and their shapes checked. shardings (needs `abstract`): a tree like it of
    `jax.sharding.Sharding`s; orbax restores each array straight into its sharding (a device
    reads only its shard). dtype (with `shardings`): cast to it while reading."""
    import orbax.checkpoint as ocp

    path = Path(directory) / "params" / name
    if not path.exists():
        raise CheckpointError(f"{directory}: missing component '{name}' (no {path})")
    if not verify_directory(path, verify, f"component '{name}'"):
        warn_unchecked(path)
    try:
        with storage_output_held():  # orbax's warnings about a damaged checkpoint: the error says it
            if abstract is None:
                return jax.tree.map(np.asarray, ocp.PyTreeCheckpointer().restore(path.absolute()))
            import flax.linen as nn

            item = nn.meta.unbox(abstract)
            if shardings is None:
                restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
            else:  # the stored shapes first: orbax's refusal of a mismatch names no key
                check_stored(directory, name, item)
                restore_args = jax.tree.map(lambda a, s: ocp.ArrayRestoreArgs(sharding=s, global_shape=a.shape,
                                                                              dtype=dtype), item, shardings)
            restored = ocp.PyTreeCheckpointer().restore(
                path.absolute(), args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                             partial_restore=True))
    except (ValueError, KeyError, OSError) as e:  # a missing key, an unreadable or damaged file
        raise CheckpointError(f"component '{name}' cannot be restored from {path}: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    check_restored(name, restored, item)
    return restored


def load_components(directory: str | Path, requests: dict[str, dict[str, Any]],
                    failed: threading.Event | None = None) -> dict[str, Any]:
    """{component: `load_component(directory, component, **kwargs)`} for each of `requests`
    ({component: kwargs}), restored concurrently, one thread each (one after another they read
    1.44 GB/s from the page cache on a 16-core H200 host: far below what its cores and PCIe
    move; orbax's own restore concurrency limit is 96 GB, no throttle here). The first failure is
    raised (`failed`, if given, set at once), after the restores already running have finished;
    none not yet started starts.

    One thread in all where there are several processes: each orbax restore ends in a
    cross-process barrier of a fixed name, which threads would reach in a different order on
    each process."""
    workers = max(1, len(requests)) if jax.process_count() == 1 else 1
    with storage_output_held(), ThreadPoolExecutor(workers, thread_name_prefix="restore") as pool:
        futures = {name: pool.submit(load_component, directory, name, **kwargs) for name, kwargs in requests.items()}
        try:
            for future in as_completed(futures.values()):
                future.result()
        except BaseException:
            if failed is not None:
                failed.set()
            for future in futures.values():
                future.cancel()
            raise  # (leaving the pool waits for the restores running)
    return {name: future.result() for name, future in futures.items()}


def check_stored(directory: str | Path, name: str, abstract) -> None:
    """A component's stored shapes and dtypes (its metadata, no data read) against `abstract`
    (e.g. before compiling starts: a mismatch is found in a second)."""
    import flax.linen as nn

    path = Path(directory) / "params" / name
    if not path.exists():
        raise CheckpointError(f"{directory}: missing component '{name}' (no {path})")
    try:
        with storage_output_held():  # orbax's warnings about damaged metadata: the error says it
            check_restored(name, stored_arrays(path), nn.meta.unbox(abstract))
    except (ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"component '{name}' cannot be read from {path}: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


def stored_arrays(path: Path):
    """The tree of a PyTree checkpoint's array metadata (shape, dtype), read without the data."""
    import orbax.checkpoint as ocp

    metadata = ocp.PyTreeCheckpointer().metadata(path.absolute())
    metadata = getattr(metadata, "item_metadata", metadata)  # a StepMetadata in newer orbax
    return getattr(metadata, "tree", metadata)


def check_restored(name: str, restored, abstract) -> None:
    """The restored arrays' shapes (and a floating dtype) against the config's abstract params."""
    want = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(abstract)}
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(restored)}
    bad = [f"{key} missing" for key in want if key not in got]
    for key, leaf in got.items():  # (shapes and dtypes only: a device array stays where it is)
        dtype = np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        if isinstance(leaf, jax.ShapeDtypeStruct):  # a partial restore leaves what the checkpoint lacks abstract
            bad.append(f"{key} is not in the checkpoint")
        elif key in want and tuple(np.shape(leaf)) != tuple(want[key].shape):
            bad.append(f"{key} has shape {tuple(np.shape(leaf))}, the config gives {tuple(want[key].shape)}")
        elif not np.issubdtype(dtype, np.floating) and dtype.name != "bfloat16":
            bad.append(f"{key} has dtype {dtype}, not floating point")
    if bad:
        raise CheckpointError(f"component '{name}' does not match the checkpoint's config: " + "; ".join(bad[:5])
                              + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "") + f"; {RECONVERT}")


def text_tokenizer_dir(directory: str | Path, component: str) -> Path:
    return Path(directory) / "text" / TEXT_DIRS[component]


BYTE_LEVEL_FILE = "byte_level.json"


def write_byte_level_tokenizer(directory: str | Path, component: str) -> None:
    """Mark a component's text ids as byte-level (`text.ByteTokenizer`: a UTF-8 byte + 3, `</s>` 1,
    pad 0), for T5s trained or drawn on them (the tiny system); no sentencepiece model is stored."""
    path = text_tokenizer_dir(directory, component)
    path.mkdir(parents=True, exist_ok=True)
    (path / BYTE_LEVEL_FILE).write_text(json.dumps({"ids": "utf-8 byte + 3", "eos": 1, "pad": 0}))
    write_manifest(path)


def text_tokenizer(directory: str | Path, component: str):
    """A component's text tokenizer: byte-level where so marked, else T5's sentencepiece model."""
    from landiff_jax import text

    path = text_tokenizer_dir(directory, component)
    return text.ByteTokenizer() if (path / BYTE_LEVEL_FILE).is_file() else text.T5TextTokenizer(path)
