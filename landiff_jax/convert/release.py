"""The released `ckpts/LanDiff` tree: which files it must hold, and their md5 sums.

The published sums (the original repository's `ckpts/CHECKSUM.md5`) ship with the package as
`CHECKSUM.md5`; a tree that carries its own `CHECKSUM.md5` is checked against that one instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

from landiff_jax.convert.io import CheckpointError

PUBLISHED_CHECKSUMS = Path(__file__).with_name("CHECKSUM.md5")
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
