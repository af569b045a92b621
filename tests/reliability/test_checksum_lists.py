"""Found by tools/fault_sweep.py (issue 13): a --checksums list that names none (or only some) of
the files a conversion reads verified nothing and converted (exit 0); a binary one was a
UnicodeDecodeError traceback. Both are one error now, before anything is converted."""

import pytest

from landiff_jax.config import LanDiffConfig
from landiff_jax.convert.io import CheckpointError
from landiff_jax.release import convert_release
from tests.reliability.conftest import E2E_CASE


def convert(case, out, **kw):
    return convert_release(case / "ckpts/LanDiff", case / "flan-t5", out, LanDiffConfig.tiny(), progress=lambda s: None,
                           **kw)


@pytest.mark.parametrize("content, message", [
    (b"", r"does not name 11 file\(s\) the conversion reads, so they cannot be verified: llm/model.safetensors"),
    (b"\xff\x00 binary", r"sums.md5: not a checksum list \('<md5>  <path>' lines of text\)"),
])
def test_a_list_that_verifies_nothing_is_refused(fixtures_dir, tmp_path, content, message):
    sums = tmp_path / "sums.md5"
    sums.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        convert(fixtures_dir / E2E_CASE, tmp_path / "out", checksum_file=sums)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sums.md5"]


def test_every_file_read_must_be_named(fixtures_dir, tmp_path):
    case = fixtures_dir / E2E_CASE
    own = (case / "ckpts/LanDiff/CHECKSUM.md5").read_text().splitlines()
    partial = tmp_path / "sums.md5"
    partial.write_text("\n".join(line for line in own if "vae/3d-vae.pt" not in line) + "\n")
    with pytest.raises(CheckpointError, match=r"does not name 1 file\(s\).*: CogVideoX-2b-sat/vae/3d-vae.pt \("):
        convert(case, tmp_path / "out", checksum_file=partial)
    flan = tmp_path / "flan.md5"
    flan.write_text("0" * 32 + "  ./config.json\n")  # a Flan-T5 list names at least the weights
    with pytest.raises(CheckpointError, match=r"flan.md5 does not name 1 file\(s\).*: model.safetensors \("):
        convert(case, tmp_path / "out", flan_t5_checksums=flan)
