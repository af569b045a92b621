"""The converted checkpoint: one directory holding every component's params and the config.

    <dir>/landiff_config.json     how to rebuild the LanDiffConfig (preset or original config), dtype
    <dir>/params/<component>/     an orbax PyTree checkpoint per component (t5_lm, t5_dit, lm,
                                  tokenizer, diffusion, vae), written one at a time
    <dir>/text/{flan_t5,t5_v1_1}/ the two T5 tokenizers (spiece.model and its small json files)

`tools/convert.py` writes it (atomically: a temporary sibling directory renamed at the end);
`load_component` reads one component back (the pipeline places each on
the device before reading the next).
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


def config_from_spec(spec: dict[str, Any]) -> LanDiffConfig:
    """A LanDiffConfig from its recorded recipe: {'preset': name} or {'original': config,
    't5_lm': hf config, 't5_dit': hf config}, plus 'dtype'."""
    if "preset" in spec:
        cfg = LanDiffConfig.preset(spec["preset"])
    else:
        cfg = LanDiffConfig.from_original(spec["original"], spec["t5_lm"], spec["t5_dit"])
    return cfg.with_dtype(spec.get("dtype", "float32"))


def copy_text_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


def save_component(directory: Path, name: str, params) -> None:
    import orbax.checkpoint as ocp

    ocp.PyTreeCheckpointer().save((directory / "params" / name).absolute(), params)


def write_spec(directory: Path, spec: dict[str, Any]) -> None:
    (directory / CONFIG_FILE).write_text(json.dumps(spec, indent=1, default=str))


def read_spec(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"not a converted LanDiff checkpoint (no {CONFIG_FILE}): {directory}")
    return json.loads(path.read_text())


def load_component(directory: str | Path, name: str):
    """One component's params (host numpy) from a converted checkpoint directory."""
    import orbax.checkpoint as ocp

    path = Path(directory) / "params" / name
    if not path.exists():
        raise CheckpointError(f"{directory}: missing component '{name}' (no {path})")
    return jax.tree.map(np.asarray, ocp.PyTreeCheckpointer().restore(path.absolute()))


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
