"""The converted checkpoint: one directory holding every component's params and our own config.

    <dir>/landiff_config.json     LanDiffConfig.to_dict() (versioned plain dict) + where it came from
    <dir>/params/<component>/     an orbax PyTree checkpoint per component (t5_lm, t5_dit, lm,
                                  tokenizer, diffusion, vae), written one at a time
    <dir>/text/{flan_t5,t5_v1_1}/ the two T5 tokenizers (spiece.model and its small json files)

`release.convert_release` writes it (atomically: a temporary sibling directory renamed at the
end); `load_config` reads the config (one JSON, parsed once) and `load_component` one
component back, optionally only the parameters a job uses (orbax partial restore).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError

COMPONENTS = ("t5_lm", "t5_dit", "lm", "tokenizer", "diffusion", "vae")
TEXT_DIRS = {"t5_lm": "flan_t5", "t5_dit": "t5_v1_1"}
TOKENIZER_FILES = ("spiece.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "config.json")
CONFIG_FILE = "landiff_config.json"
RECONVERT = ("re-convert the release with this version: "
             "python tools/convert.py --release ... --flan_t5 ... --out NEW_DIR")


def copy_text_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


def save_component(directory: Path, name: str, params) -> None:
    import orbax.checkpoint as ocp

    ocp.PyTreeCheckpointer().save((directory / "params" / name).absolute(), params)


def write_config(directory: Path, cfg: LanDiffConfig, converted_from: str) -> None:
    record = {**cfg.to_dict(), "converted_from": converted_from}
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


def load_component(directory: str | Path, name: str, abstract: Any = None):
    """One component's params (host numpy) from a converted checkpoint directory; with
    `abstract` (a subtree of its params' shapes), only those parameters are read."""
    import orbax.checkpoint as ocp

    path = Path(directory) / "params" / name
    if not path.exists():
        raise CheckpointError(f"{directory}: missing component '{name}' (no {path})")
    if abstract is None:
        return jax.tree.map(np.asarray, ocp.PyTreeCheckpointer().restore(path.absolute()))
    import flax.linen as nn

    item = nn.meta.unbox(abstract)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    return ocp.PyTreeCheckpointer().restore(
        path.absolute(), args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True))


def text_tokenizer_dir(directory: str | Path, component: str) -> Path:
    return Path(directory) / "text" / TEXT_DIRS[component]


BYTE_LEVEL_FILE = "byte_level.json"


def write_byte_level_tokenizer(directory: str | Path, component: str) -> None:
    """Mark a component's text ids as byte-level (`text.ByteTokenizer`: a UTF-8 byte + 3, `</s>` 1,
    pad 0), for T5s trained or drawn on them (the tiny system); no sentencepiece model is stored."""
    path = text_tokenizer_dir(directory, component)
    path.mkdir(parents=True, exist_ok=True)
    (path / BYTE_LEVEL_FILE).write_text(json.dumps({"ids": "utf-8 byte + 3", "eos": 1, "pad": 0}))


def text_tokenizer(directory: str | Path, component: str):
    """A component's text tokenizer: byte-level where so marked, else T5's sentencepiece model."""
    from landiff_jax import text

    path = text_tokenizer_dir(directory, component)
    return text.ByteTokenizer() if (path / BYTE_LEVEL_FILE).is_file() else text.T5TextTokenizer(path)
