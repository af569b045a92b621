"""Left over from issue 13's sweep: an output path with a file on the way. prepare_data printed the
raw `[Errno 20] Not a directory` (exit 1, a video source only after scanning the clips); evaluate
the raw `[Errno 17] File exists` (an --output_dir that is a file: after loading the model; a file
named videos/ inside it: after the first batch), and a traceback for a results.json directory after
every video was made. Now one line naming the argument, exit 2, before anything is loaded or made."""

import pytest

from landiff_jax import cli


def test_check_output_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "videos").write_text("x")
    cli.check_output_dir("--out", tmp_path / "new" / "deeper")  # can be made: nothing raised, nothing made
    cli.check_output_dir("--out", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]
    refused = {
        (tmp_path / "file", None): f"--out {tmp_path}/file: {tmp_path}/file is a file, not a directory",
        (tmp_path / "file" / "a" / "b", None): f"--out {tmp_path}/file/a/b: {tmp_path}/file is a file, not a directory",
        (tmp_path / "out", "videos"): f"--out {tmp_path}/out: {tmp_path}/out/videos is a file, not a directory",
    }
    for (directory, subdirectory), message in refused.items():
        with pytest.raises(cli.UsageError) as e:
            cli.check_output_dir("--out", directory, subdirectory)
        assert str(e.value) == message


def test_tools_refuse_a_file_on_the_way_in_one_line(tmp_path, tools_refuse):
    (tmp_path / "file").write_text("a file")
    (tmp_path / "lists").mkdir()
    (tmp_path / "eval" / "videos").parent.mkdir()
    (tmp_path / "eval" / "videos").write_text("a file")
    (tmp_path / "eval2" / "results.json").mkdir(parents=True)
    t = tmp_path
    lm = ["prepare_data.py", "--source", "synthetic_lm", "--stages", "lm", "--num_examples", "4"]
    videos = ["prepare_data.py", "--source", "synthetic_videos", "--num_examples", "2", "--random_weights",
              "--stages", "tokenizer"]
    runs = {
        "prepare --out a file": ([*lm, "--out", f"{t}/file"],
                                 f"error: --out {t}/file: {t}/file is a file, not a directory"),
        "prepare --out below a file": ([*videos, "--out", f"{t}/file/data"],
                                       f"error: --out {t}/file/data: {t}/file is a file, not a directory"),
        "prepare --list a directory": (["prepare_data.py", "--source", "videos", "--list", f"{t}/lists",
                                        "--random_weights", "--stages", "tokenizer", "--out", f"{t}/data"],
                                       f"error: --list {t}/lists: a directory, not a file"),
        "evaluate --output_dir below a file": (  # the model (shipped tiny checkpoint) is not loaded first
            ["evaluate.py", "--subset", "1", "--output_dir", f"{t}/file/eval"],
            f"evaluate.py: error: --output_dir {t}/file/eval: {t}/file is a file, not a directory (see --help)"),
        "evaluate videos/ a file": (["evaluate.py", "--ground_truth", "--subset", "1", "--output_dir", f"{t}/eval"],
                                    f"evaluate.py: error: --output_dir {t}/eval: {t}/eval/videos is a file, not a "
                                    "directory (see --help)"),
        "evaluate results.json a directory": (
            ["evaluate.py", "--ground_truth", "--subset", "1", "--output_dir", f"{t}/eval2"],
            f"evaluate.py: error: --output_dir {t}/eval2: {t}/eval2/results.json is a directory, not a file "
            "(see --help)"),
    }
    for name, out in tools_refuse(runs).items():
        assert "loading" not in out and "scanned" not in out, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "eval2", "file", "lists"]  # nothing made
    assert (tmp_path / "file").read_text() == "a file" and (tmp_path / "eval" / "videos").read_text() == "a file"
    assert [p.name for p in (tmp_path / "eval2").iterdir()] == ["results.json"]
