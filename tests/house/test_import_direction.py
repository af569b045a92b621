"""Imports go down only: tools → parity → pipeline / release / train → checkpoint / config /
runtime → models (text, tokenizer, lm, diffusion, vae) → nn / kernels / convert / parallel.

Read with `ast` (nothing is imported). Within the models layer the allowed edges are listed: the
diffusion stage holds a copy of the tokenizer, the LM counts the tokenizer's codes.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "landiff_jax"
MODELS = ("text", "tokenizer", "lm", "diffusion", "vae")
# the layer of each top-level unit of landiff_jax (higher imports lower, never the reverse)
LAYERS = {
    "parity": 6, "cli": 6, "prepare": 6, "export": 6, "demo": 6,
    "pipeline": 5, "release": 5, "train": 5,
    "checkpoint": 4, "runtime": 4, "data": 4,
    "config": 3,
    **{model: 2 for model in MODELS},
    "nn": 1, "kernels": 0, "convert": 0, "parallel": 0, "config_file": 0, "video_io": 1, "files": 0,
    "progress": 0,
}
MODEL_EDGES = {("diffusion", "tokenizer"), ("lm", "tokenizer"), ("diffusion", "vae")}  # diffusion: the latent scale


def unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "landiff_jax" and len(parts) > 1 else None


def imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "landiff_jax":  # `from landiff_jax import lm, text`
                yield from (f"landiff_jax.{alias.name}" for alias in node.names)
            else:
                yield node.module


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert units <= set(LAYERS), f"place these in LAYERS: {sorted(units - set(LAYERS))}"


def test_imports_go_down_only():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if here == "__init__.py":
            continue
        for module in imports(path):
            if module.split(".")[0] == "tools":
                upward.append(f"{path.relative_to(ROOT)} imports {module} (the library never imports tools)")
            there = unit(module)
            if there is None or there == here:
                continue
            if LAYERS[there] < LAYERS[here] or (here, there) in MODEL_EDGES:
                continue
            upward.append(f"{path.relative_to(ROOT)} imports {module} ({here} → {there})")
    assert not upward, "imports that do not go down:\n" + "\n".join(upward)


def test_model_code_never_imports_torch_at_module_level():
    offenders = []
    for model in MODELS:
        for path in sorted((PACKAGE / model).glob("*.py")):
            tree = ast.parse(path.read_text())
            top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
            names += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] == "torch"]
    assert not offenders, offenders


def test_tools_do_not_edit_sys_path():
    edits = [str(p.relative_to(ROOT)) for p in (ROOT / "tools").rglob("*.py") if "sys.path" in p.read_text()]
    assert not edits, edits
