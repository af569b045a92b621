"""Found by tools/fault_sweep.py (issue 13): tools/parity.py ran a case without io.npz, with an
io.npz that is no archive, or whose meta.json is a list, into a traceback; each is one line now,
before any case runs."""


import numpy as np
import pytest

from landiff_jax import cli


@pytest.fixture(scope="module")
def parity_tool(tool_module):
    return tool_module("parity")


@pytest.mark.parametrize("meta, npz, message", [
    ('{"component": "t5"}', None, r"case/io.npz not found"),
    ('{"component": "t5"}', b"not a zip", r"case/io.npz is not an .npz archive \(not a zip file\)"),
    ('{"component": "t5"}', b"PK\x03\x04 damaged", r"case/io.npz is not (an|a readable) .npz archive"),
    ("[]", "good", r"case/meta.json is not a JSON object"),
])
def test_a_damaged_case_is_one_line(parity_tool, tmp_path, meta, npz, message):
    case = tmp_path / "case"
    case.mkdir()
    (case / "meta.json").write_text(meta)
    if npz == "good":
        np.savez(case / "io.npz", x=np.zeros(2))
    elif npz is not None:
        (case / "io.npz").write_bytes(npz)
    with pytest.raises(cli.UsageError, match=message):
        parity_tool.check_roots([str(tmp_path)])


def test_a_good_case_passes(parity_tool, tmp_path):
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "meta.json").write_text('{"component": "t5"}')
    np.savez(tmp_path / "case" / "io.npz", x=np.zeros(2))
    parity_tool.check_roots([str(tmp_path)])
