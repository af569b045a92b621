"""Found by tools/fault_sweep.py (issue 13): arguments checked only after the weights were read
(generate/reconstruct --fps 0: ffmpeg failed after the whole generation; evaluate's --steps and
--seed, the seeds of all its batches: after loading), and evaluate's binary prompts file (a traceback). Each is one
line, exit 2, before anything is loaded or written. The tools run at once, as subprocesses."""

def test_refused_in_one_line_before_loading(tmp_path, tools_refuse):
    (tmp_path / "clip.mp4").write_bytes(b"not decoded before the checks")
    (tmp_path / "prompts.txt").write_bytes(bytes(range(256)))
    runs = {
        "generate --fps 0": (["generate.py", "--prompt", "a fox", "--fps", "0", "--output_dir", "{tmp}/out"],
                             "generate.py: error: --fps must be >= 1, got 0 (see --help)"),
        "reconstruct --fps -8": (["reconstruct.py", "{tmp}/clip.mp4", "--random_weights", "--fps", "-8"],
                                 "reconstruct.py: error: --fps must be >= 1, got -8 (see --help)"),
        "evaluate --seed": (["evaluate.py", "--seed", str(2**32 - 1), "--subset", "2", "--seeds", "1", "--batch_size",
                             "1", "--output_dir", "{tmp}/eval"],  # the second batch's seed is one more
                            "evaluate.py: error: seed must be in [0, 4294967295], got 4294967296 (see --help)"),
        "evaluate binary prompts": (["evaluate.py", "--ground_truth", "--prompts_file", "{tmp}/prompts.txt",
                                     "--output_dir", "{tmp}/eval"],
                                    f"evaluate.py: error: prompts file {tmp_path}/prompts.txt is not UTF-8 text "
                                    "(invalid start byte at byte 128) (see --help)"),
    }
    runs = {name: ([args[0], *(a.format(tmp=tmp_path) for a in args[1:])], line) for name, (args, line) in runs.items()}
    for name, out in tools_refuse(runs).items():
        assert "loading" not in out, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "prompts.txt"]  # no output directory
