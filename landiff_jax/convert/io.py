"""Reading checkpoint files into {key: numpy array}, with errors that name the file.

Only this module imports torch, and only when a .pt file is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class CheckpointError(Exception):
    """A checkpoint file or directory is missing, unreadable or not of the expected layout."""


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path}")
    return path


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """A .safetensors file, or an HF directory holding `model.safetensors` or a sharded
    `model.safetensors.index.json` (every shard it names must exist)."""
    from safetensors.numpy import load_file

    path = Path(path)
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [s for s in shards if not (path / s).exists()]
            if missing:
                raise CheckpointError(f"{index} names missing shard(s): {', '.join(str(path / m) for m in missing)}")
            out: dict[str, np.ndarray] = {}
            for shard in shards:
                out.update(read_safetensors(path / shard))
            return out
        path = path / "model.safetensors"
    _require(path, "safetensors file")
    try:
        return _load_safetensors_upcasting_bf16(path, load_file)
    except Exception as e:  # corrupt header / truncated file
        raise CheckpointError(f"cannot read safetensors file {path}: {e}") from e


def _load_safetensors_upcasting_bf16(path: Path, load_file) -> dict[str, np.ndarray]:
    """numpy has no bfloat16; such tensors are read through ml_dtypes (shipped with jax)."""
    try:
        return load_file(str(path))
    except (TypeError, ValueError):
        from safetensors import safe_open

        out = {}
        with safe_open(str(path), framework="flax") as f:
            for k in f.keys():
                out[k] = np.asarray(f.get_tensor(k))
        return out


def read_torch(path: str | Path, top_key: str | None = None, mmap: bool = False) -> dict[str, np.ndarray]:
    """A torch.save'd state dict (`torch.load(weights_only=True)`), optionally nested under
    `top_key` (e.g. 'module', 'state_dict'); bf16 tensors are upcast to float32. mmap: the arrays
    stay in the file until touched (for reading shapes only; zip-format files)."""
    path = Path(path)
    torch, obj = _torch_load(path, mmap)
    if top_key is not None:
        if not isinstance(obj, dict) or top_key not in obj:
            found = list(obj.keys()) if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"{path}: expected a dict with key '{top_key}', found {found}")
        obj = obj[top_key]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: _to_numpy(torch, v) for k, v in obj.items() if hasattr(v, "numpy")}


def read_torch_tensor(path: str | Path) -> np.ndarray:
    """A file holding one torch.save'd tensor (e.g. a stacked mean/std); bf16 is upcast to float32."""
    path = Path(path)
    torch, obj = _torch_load(path)
    if not isinstance(obj, torch.Tensor):
        raise CheckpointError(f"{path}: expected one saved tensor, found {type(obj).__name__}")
    return _to_numpy(torch, obj)


def _torch_load(path: Path, mmap: bool = False):
    """(torch, the object) of `torch.load(weights_only=True)`, with one-line errors. mmap applies
    to zip-format files (torch.save's since 1.6); an older file is read whole."""
    import pickle
    import warnings
    import zipfile

    _require(path, "torch checkpoint")
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise CheckpointError(f"reading {path} needs torch: pip install 'landiff-jax[convert]' "
                              "(its CPU build: see the README)") from e
    try:
        with warnings.catch_warnings():  # a plain pickle's protocol: the refusal below says what matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch, torch.load(str(path), map_location="cpu", weights_only=True,
                                     mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        # torch's message (several paragraphs) suggests weights_only=False: never for a file that names code
        code = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), None)
        if code:
            raise CheckpointError(f"{path} is refused: not a plain tensor checkpoint ({code}); a released "
                                  f"checkpoint holds tensors only, and this one could run code if loaded") from None
        why = next((line.strip() for line in str(e).splitlines() if "Unsupported" in line), _first_line(e))
        raise CheckpointError(f"cannot read torch checkpoint {path}: not a torch checkpoint, or damaged ({why})") \
            from None
    except Exception as e:
        raise CheckpointError(f"cannot read torch checkpoint {path}: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


def _to_numpy(torch, v) -> np.ndarray:
    v = v.detach()
    return (v.float() if v.dtype == torch.bfloat16 else v).numpy()


def read_latest(directory: str | Path, filename: str = "mp_rank_00_model_states.pt") -> Path:
    """sat's layout: `<dir>/latest` holds a step name; the weights are `<dir>/<step>/<filename>`."""
    directory = Path(directory)
    tracker = _require(directory / "latest", "checkpoint tracker file")
    step = tracker.read_text().strip()
    if not step:
        raise CheckpointError(f"{tracker} is empty")
    return _require(directory / step / filename, "checkpoint file")
