"""Whole-release conversion: the released `ckpts/LanDiff` tree (+ a Flan-T5 directory) into one
converted checkpoint (`checkpoint.py`). The one place that imports every model's converter and
original-config parser.

The published md5 sums (the original repository's `ckpts/CHECKSUM.md5`) ship with the package as
`landiff_jax/CHECKSUM.md5`; a tree that carries its own `CHECKSUM.md5` is checked against that one
instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from landiff_jax import checkpoint, diffusion, lm, text, tokenizer, vae
from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError, read_safetensors, read_torch
from landiff_jax.diffusion import original as diffusion_original
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

    def missing_files(self) -> list[Path]:
        """Every required file that is absent (all of them, not just the first)."""
        required = [self.llm, self.tokenizer, self.vae]
        for sat_dir in (self.diffusion, self.base_dit):
            required.append(sat_dir / "latest")
            latest = sat_dir / "latest"
            if latest.exists():
                required.append(sat_dir / latest.read_text().strip() / "mp_rank_00_model_states.pt")
        for hf_dir in (self.t5_v1_1, self.flan_t5):
            required += [hf_dir / name for name in HF_T5_FILES]
            if not (hf_dir / "model.safetensors.index.json").exists():
                required.append(hf_dir / "model.safetensors")
        return [p for p in required if not p.exists()]


def read_checksums(path: Path) -> dict[str, str]:
    """`<md5>  ./<relative path>` lines -> {relative path: md5}."""
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise CheckpointError(f"{path}:{number}: not a '<md5>  <path>' line: {line!r}")
        sums[parts[1].strip().removeprefix("./")] = parts[0].lower()
    return sums


def file_md5(path: Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_checksums(root: Path, checksum_file: Path | None = None,
                     progress: Callable[[str], None] = print) -> Path:
    """Check every file the checksum list names; raise naming each missing or corrupted file.

    Returns the checksum file used: `checksum_file`, else the tree's own `CHECKSUM.md5`, else the
    published sums shipped with the package.
    """
    if checksum_file is None:
        own = root / "CHECKSUM.md5"
        checksum_file = own if own.exists() else PUBLISHED_CHECKSUMS
    sums = read_checksums(checksum_file)
    bad = []
    for number, (rel, expected) in enumerate(sorted(sums.items()), 1):
        path = root / rel
        if not path.exists():
            bad.append(f"missing: {path}")
            continue
        progress(f"  md5 [{number}/{len(sums)}] {rel}")
        actual = file_md5(path)
        if actual != expected:
            bad.append(f"checksum mismatch: {path} (md5 {actual}, expected {expected} from {checksum_file})")
    if bad:
        raise CheckpointError("release verification failed:\n  " + "\n  ".join(bad))
    return checksum_file


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


def convert_release(release: Path, flan_t5: Path, out: Path, config: LanDiffConfig | Mapping[str, Any], *,
                    dtype: str = "float32", verify: bool = True, checksum_file: Path | None = None,
                    progress: Callable[[str], None] = print) -> Path:
    """Convert a released tree (+ the Flan-T5 dir) into one converted checkpoint at `out`.

    `config`: our LanDiffConfig (a preset or `configs/*.py`), or the original's configuration
    (a dict, parsed with the two T5 directories' config.json by `config_from_original`).
    Everything is checked before anything heavy: every missing file is listed at once, then the
    md5 sums (unless `verify` is False). Components are converted and written one at a time into
    a temporary sibling directory that is renamed to `out` only when all succeeded.
    """
    paths = ReleasePaths(Path(release), Path(flan_t5))
    missing = paths.missing_files()
    if missing:
        raise CheckpointError("the release is incomplete; missing:\n  " + "\n  ".join(map(str, missing)))
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"output already exists (remove it first): {out}")
    if verify:
        progress(f"verifying md5 sums of {paths.root}")
        used = verify_checksums(paths.root, checksum_file, progress)
        progress(f"  all files match {used}")
    if not isinstance(config, LanDiffConfig):
        hf_config = lambda d: json.loads((d / "config.json").read_text())
        config = config_from_original(config, hf_config(paths.flan_t5), hf_config(paths.t5_v1_1))
    cfg = config.with_dtype(dtype)

    steps = [
        ("t5_lm", lambda: text.convert(read_safetensors(paths.flan_t5), cfg.t5_lm, source=str(paths.flan_t5))),
        ("t5_dit", lambda: text.convert(read_safetensors(paths.t5_v1_1), cfg.t5_dit, source=str(paths.t5_v1_1))),
        ("lm", lambda: lm.convert(read_safetensors(paths.llm), cfg.lm, source=str(paths.llm))),
        ("tokenizer", lambda: tokenizer.convert(read_safetensors(paths.tokenizer), cfg.tokenizer,
                                                source=str(paths.tokenizer))),
        ("diffusion", lambda: diffusion.load_diffusion(paths.base_dit, paths.diffusion, cfg.dit, cfg.tokenizer)),
        ("vae", lambda: vae.convert(read_torch(paths.vae, "state_dict"), cfg.vae, source=str(paths.vae))),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for number, (name, build) in enumerate(steps, 1):
            progress(f"[{number}/{len(steps)}] converting {name}")
            params, report = build()
            progress(f"  {report.summary()}")
            checkpoint.save_component(tmp, name, params)
            del params
        for component, sub in checkpoint.TEXT_DIRS.items():
            src = paths.flan_t5 if component == "t5_lm" else paths.t5_v1_1
            checkpoint.copy_text_tokenizer(src, tmp / "text" / sub)
        checkpoint.write_config(tmp, cfg, converted_from=str(paths.root.resolve()))
        tmp.chmod(0o755)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    progress(f"wrote {out}")
    return out
