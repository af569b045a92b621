"""Left over from issue 13's sweep: `python tools/<tool>.py --help | head -3` printed a
BrokenPipeError traceback when the reader had gone (raised in absl's help printing, or at the
interpreter's last flush: "Exception ignored ... BrokenPipeError", exit 120). cli.run ends such a
tool quietly with 141 (128 + SIGPIPE). The reader here closes its end before the tool writes
anything, so the write fails every time (no race with a pipe buffer)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args", [
    ["generate.py", "--help"],  # the traceback came from absl's print() after the help text
    ["encode_text.py", "--help"],  # a tool that called app.run itself
    # main returns 0 with its line still buffered: the failure is in the flush after main
    ["fault_sweep.py", "--list", "--only", "video/no_video_encoder", "--out", "{tmp}/sweep"],
], ids=["generate-help", "encode_text-help", "fault_sweep-list"])
def test_a_closed_stdout_ends_the_tool_quietly(args, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env.pop("PYTHONUNBUFFERED", None)  # stdout block-buffered, as a user's pipe is
    command = [sys.executable, str(REPO / "tools" / args[0]), *(a.format(tmp=tmp_path) for a in args[1:])]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        proc.stdout.close()  # the reader has gone: `| head` after its lines
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 141, err[-2000:]
    assert err == ""


def test_an_open_stdout_gets_everything(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env.pop("PYTHONUNBUFFERED", None)
    result = subprocess.run([sys.executable, str(REPO / "tools" / "fault_sweep.py"), "--list", "--only",
                             "video/no_video_encoder", "--out", str(tmp_path / "sweep")], env=env, capture_output=True,
                            text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "video/no_video_encoder\n", "")
