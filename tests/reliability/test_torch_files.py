"""Found by tools/fault_sweep.py (issue 13): a .pt file that names code (a malicious pickle) was
refused by torch's weights_only loader with five lines advising to retry with weights_only=False;
it is one line now that says why not. A pre-zip (torch < 1.6) file failed the conversion's
memory-mapped shape check ("mmap can only be used with ..."); it is read whole instead."""

import os
import pickle

import pytest

from landiff_jax.convert.io import CheckpointError, read_torch


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("mmap", [False, True])
def test_files_that_name_code_are_refused_in_one_line(torch, tmp_path, mmap):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": Payload(marker)}, tmp_path / "zip.pt")
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
    with pytest.raises(CheckpointError) as refused:
        read_torch(tmp_path / "zip.pt", "state_dict", mmap=mmap)
    assert str(refused.value) == (f"{tmp_path / 'zip.pt'} is refused: not a plain tensor checkpoint (Trying to load "
                                  "unsupported GLOBAL posix.system whose module posix is blocked.); a released "
                                  "checkpoint holds tensors only, and this one could run code if loaded")
    with pytest.raises(CheckpointError, match=r"^cannot read torch checkpoint .*plain.pt: not a torch checkpoint, or "
                                              r"damaged \([^\n]*\)$"):
        read_torch(tmp_path / "plain.pt", "state_dict", mmap=mmap)
    assert not marker.exists()


def test_a_pre_zip_file_is_read_for_its_shapes_too(torch, tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2, 3)}}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert read_torch(tmp_path / "old.pt", "state_dict", mmap=True)["w"].shape == (2, 3)
