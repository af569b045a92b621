"""Videos + captions → the datasets of every stage (data/clips.py, data/prepare.py, tools/prepare_data.py).

One set of tiny random models and one compiled batch computation serve the whole module."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from landiff_jax import prepare
from landiff_jax.data import clips, records, synthetic
from landiff_jax.data.pipeline import DataOptions, batches
from landiff_jax.text.encoders import encode_for_diffusion, encode_for_lm, unpadded
from landiff_jax.tokenizer.model import VideoVQ
from landiff_jax.video_io import write_mp4

REPO = Path(__file__).resolve().parents[2]
STAGES = ("tokenizer", "diffusion", "lm")
BATCH = 2
SPEC = clips.ClipSpec(num_frames=9, height=64, width=96)  # the tiny preset's clip: 3 latent frames


@pytest.fixture(scope="module")
def models():
    return prepare.load_frozen_models(None, preset="tiny", seed=0)


def stage_examples(source, models, **kw):
    return prepare.StageExamples(source, models, STAGES, max_text=64, batch_size=BATCH, codes=True, **kw)


def test_decode_resamples_to_8fps_and_centre_crops(tmp_path):
    ramp = np.arange(60, dtype=np.uint8)[:, None, None, None] * 4 + np.zeros((1, 64, 96, 3), np.uint8)
    for rate in (30, 24, 10):  # frame j has brightness 4j; yuv444p keeps it within ±2
        write_mp4(tmp_path / "ramp.mp4", ramp, fps=rate, pixelformat="yuv444p")
        frames = clips.decode_video(tmp_path / "ramp.mp4", SPEC)
        assert frames.shape == (9, 64, 96, 3)
        np.testing.assert_array_equal(np.round(frames[:, 32, 48, 0] / 4), [k * rate // 8 for k in range(9)])
    # white where the centred 3:2 crop is, black outside: the crop fills the frame (not squeezed in)
    portrait = np.zeros((9, 96, 48, 3), np.uint8)
    portrait[:, 32:64] = 255  # the 48×32 crop of a 48-wide, 96-high frame is rows 32..63
    landscape = np.zeros((9, 120, 200, 3), np.uint8)
    landscape[:, :, 10:190] = 255  # the 180×120 crop of a 200-wide frame is columns 10..189
    for name, video in (("portrait", portrait), ("landscape", landscape)):
        write_mp4(tmp_path / f"{name}.mp4", video, fps=8, pixelformat="yuv444p")
        frames = clips.decode_video(tmp_path / f"{name}.mp4", SPEC)
        assert frames[:, 3:-3, 3:-3].min() > 235, name


@pytest.fixture(scope="module")
def video_list(tmp_path_factory):
    """Three usable videos (another size and aspect at 24 fps, the exact size at 8 fps, a long one),
    a broken file, a too-short video, an empty caption and a missing file."""
    root = tmp_path_factory.mktemp("videos")
    wide = synthetic.sample_clip(0, 7, 30, 120, 200)  # 1.25 s at 24 fps: 10 frames at 8 fps
    exact = synthetic.sample_clip(1, 7, 9, 64, 96)  # exactly 9 frames at 8 fps
    tall = synthetic.sample_clip(2, 7, 40, 96, 48)  # 5 s at 8 fps, portrait: cropped to a band
    write_mp4(root / "wide.mp4", wide[2], fps=24)
    write_mp4(root / "exact.mp4", exact[2], fps=8)
    write_mp4(root / "sub" / "tall.mp4", tall[2], fps=8)
    write_mp4(root / "short.mp4", exact[2][:5], fps=8)  # 0.6 s: 5 frames at 8 fps
    (root / "broken.mp4").write_bytes((root / "wide.mp4").read_bytes()[:300])
    lines = [{"path": "wide.mp4", "caption": wide[0], "motion_score": 0.5},
             {"path": "broken.mp4", "caption": "a broken file"},
             {"path": "exact.mp4", "caption": exact[0]},
             {"path": "short.mp4", "caption": "too short"},
             {"path": "exact.mp4", "caption": "   "},
             {"path": str(root / "sub" / "tall.mp4"), "caption": tall[0], "motion_score": 2},
             {"path": "missing.mp4", "caption": "no such file"}]
    (root / "list.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    return root


def test_video_list_shards_and_report(video_list, models, tmp_path):
    source, clip_report = clips.scan(video_list / "list.jsonl", SPEC, motion_score=0.1, workers=2)
    assert [e.line for e in source.entries] == [1, 3, 6]
    assert clip_report["listed"] == 7 and clip_report["usable"] == 3
    assert clip_report["bad_counts"] == {"unreadable": 2, "too_short": 1, "empty_caption": 1}
    bad = clip_report["bad"]
    assert [(b["line"], Path(b["path"]).name) for b in bad["unreadable"]] == [(2, "broken.mp4"), (7, "missing.mp4")]
    assert [(b["line"], Path(b["path"]).name) for b in bad["too_short"]] == [(4, "short.mp4")]
    assert bad["too_short"][0]["reason"].startswith("5 frames at 8 fps, need 9")
    assert [b["line"] for b in bad["empty_caption"]] == [5]

    examples = stage_examples(source, models)
    report = prepare.write_report(tmp_path, examples, clip_report)
    assert json.loads((tmp_path / prepare.REPORT_FILE).read_text()) == report
    assert report["clips"]["bad_counts"]["unreadable"] == 2
    infos = prepare.write(examples, tmp_path, examples_per_shard=2, log=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*STAGES, prepare.REPORT_FILE])
    cfg = models.cfg
    want_shapes = {
        "tokenizer": {"features": (3, 4, 6, 16)},
        "diffusion": {"latent_mean": (3, 8, 12, 4), "latent_std": (3, 8, 12, 4), "text_embedding": (96, 32),
                      "codes": (10,)},
        "lm": {"text_embedding": (64, 32), "text_mask": (64,), "codes": (10,), "frames": (), "motion_score": ()},
    }
    data = {}
    for info in infos:
        read = records.RecordSource(tmp_path / info.stage)
        assert read.info == info and len(read) == 3 and [s.num_examples for s in info.shards] == [2, 1]
        data[info.stage] = [read[i] for i in range(3)]
        assert {k: v.shape for k, v in data[info.stage][0].items()} == want_shapes[info.stage]

    captions = [e.caption for e in source.entries]
    lm = data["lm"]
    np.testing.assert_array_equal([e["motion_score"] for e in lm], np.float32([0.5, 0.1, 2.0]))
    assert all(int(e["frames"]) == 3 for e in lm)
    # Flan-T5 rows: those of the longest-padded encoding, moved to the front, zeros after
    hidden, mask = encode_for_lm(models.tokenizers["t5_lm"], models.params["t5_lm"], cfg.t5_lm, captions)
    for example, rows in zip(lm, unpadded(hidden, mask)):
        n = len(rows)
        assert example["text_mask"].sum() == n and example["text_mask"][:n].all()
        np.testing.assert_allclose(example["text_embedding"][:n], rows, atol=1e-5)
        assert not example["text_embedding"][n:].any()
    dit = encode_for_diffusion(models.tokenizers["t5_dit"], models.params["t5_dit"], cfg.t5_dit, captions,
                               cfg.dit.text_length)
    for example, want in zip(data["diffusion"], np.asarray(dit)):
        np.testing.assert_allclose(example["text_embedding"], want, atol=1e-5)
    for d, t in zip(data["diffusion"], data["lm"]):
        np.testing.assert_array_equal(d["codes"], t["codes"])
        assert (d["latent_std"] > 0).all() and d["codes"].min() >= 0 and d["codes"].max() < cfg.tokenizer.codebook_size
    # Theia features of every 4th frame of each clip (the tokenizer's semantic frames)
    video = np.stack([source.clip(i).frames[::4] for i in range(3)])
    want = VideoVQ(cfg.tokenizer).apply({"params": models.params["tokenizer"]}, video, method=VideoVQ.extract_features)
    np.testing.assert_allclose(np.stack([e["features"] for e in data["tokenizer"]]), want, atol=1e-4)


@pytest.fixture(scope="module")
def synthetic_datasets(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    source = clips.SyntheticVideos(4, seed=3, spec=SPEC, paraphrase=True)
    examples = stage_examples(source, models)
    prepare.write_report(out, examples)
    return out, examples, prepare.write(examples, out, examples_per_shard=2, log=lambda line: None)


def test_synthetic_videos_feed_every_stage(synthetic_datasets, models):
    out, examples, infos = synthetic_datasets
    assert [info.stage for info in infos] == list(STAGES)
    report = json.loads((out / prepare.REPORT_FILE).read_text())
    assert report["source"]["source"] == "synthetic_videos" and report["clips"]["usable"] == 4
    lm_info = records.read_info(out / "lm")
    assert records.check_lm_dataset(lm_info, models.cfg.lm, "lm") == 3  # what tools/train.py checks
    assert lm_info.meta["weights"] == {"random_weights": {"preset": "tiny", "seed": 0}}
    captions = [examples.source.caption(i) for i in range(4)]
    assert captions == [examples.source.clip(i).caption for i in range(4)] and len(set(captions)) == 4
    assert report["captions_truncated"] == {"diffusion": [], "lm": []}
    for stage in STAGES:
        got = list(batches(out / stage, DataOptions(global_batch=2, shuffle=False, num_epochs=1), 0, 1))
        assert len(got) == 2
        first = got[0]
        assert all(v.shape[0] == 2 for v in first.values())
        if stage == "lm":
            np.testing.assert_allclose(first["motion_score"], 0.1)
            assert first["codes"].dtype == np.int32 and first["text_mask"].dtype == bool
        if stage == "diffusion":
            assert set(first) == {"latent_mean", "latent_std", "text_embedding", "codes"}


class Killed(Exception):
    pass


def test_resume_after_interrupted_shard(synthetic_datasets, models, tmp_path):
    full, examples, infos = synthetic_datasets
    compute = examples.examples

    def dies_in_last_shard(start, count):
        for i, row in enumerate(compute(start, count)):
            if start == 2 and i == 1:
                raise Killed
            yield row

    examples.examples = dies_in_last_shard
    try:
        with pytest.raises(Killed):
            prepare.write(examples, tmp_path, examples_per_shard=2, log=lambda line: None)
    finally:
        examples.examples = compute
    first = {stage: tmp_path / stage / f"{stage}-00000-of-00002.array_record" for stage in STAGES}
    kept = {stage: first[stage].stat().st_mtime_ns for stage in STAGES}
    assert not any((tmp_path / stage / records.DATASET_FILE).exists() for stage in STAGES)
    assert not any((tmp_path / stage / f"{stage}-00001-of-00002.array_record").exists() for stage in STAGES)
    first["lm"].write_bytes(b"damaged")  # complete in two datasets, not in the third: redone there only

    lines = []
    prepare.write(examples, tmp_path, examples_per_shard=2, log=lines.append)
    lines = [line for line in lines if line.startswith("shard")]  # without progress lines (a loaded machine)
    assert lines[0].startswith("shard 0: written; 2/4 clips") and lines[1].startswith("shard 1: written; 4/4 clips")
    assert [first[s].stat().st_mtime_ns == kept[s] for s in STAGES] == [True, True, False]
    for stage in STAGES:
        resumed, whole = records.RecordSource(tmp_path / stage), records.RecordSource(full / stage)
        assert resumed.info == whole.info
        for i in range(4):
            for name, value in whole[i].items():
                np.testing.assert_allclose(resumed[i][name], value, atol=1e-6)


def tool(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "tools" / "prepare_data.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--source", "videos", "--list", "nowhere.jsonl", "--random_weights"], "--list nowhere.jsonl: no such file"),
    (["--source", "synthetic_videos", "--num_examples", "4", "--random_weights", "--stages", "lm"],
     "--stages lm with diffusion condition 'features' need the tokenizer's codes: pass --codes"),
    (["--source", "synthetic_videos", "--num_examples", "4"],
     "give either --checkpoint DIR or --random_weights (with --preset)"),
    (["--source", "synthetic_videos", "--num_examples", "4", "--random_weights", "--stages", "lm,vae"],
     "--stages must be distinct ones of tokenizer,diffusion,lm, got lm,vae"),
])
def test_bad_arguments_get_one_line(tmp_path, args, message):
    if "--stages" not in args:
        args = [*args, "--stages", "tokenizer"]
    run = tool(*args, "--out", str(tmp_path / "x"))
    assert run.returncode == 2 and run.stderr.strip() == f"error: {message}"
    assert not (tmp_path / "x").exists()


def test_tool_decodes_without_fork_warning(video_list, tmp_path):
    """Issue 14: the clips are decoded again while the frozen models run (JAX's threads are up),
    by our own ffmpeg subprocess: no os.fork() warning."""
    run = tool("--source", "videos", "--list", str(video_list / "list.jsonl"), "--random_weights", "--preset", "tiny",
               "--stages", "tokenizer", "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert '3 usable clips; bad: {"unreadable": 2, "too_short": 1, "empty_caption": 1}' in run.stdout
    assert "os.fork()" not in run.stderr


@pytest.mark.slow
def test_tool_on_two_devices_writes_the_same(synthetic_datasets, tmp_path):
    """The tool's run over a 2-device data mesh gives the library's single-device datasets."""
    full, _, infos = synthetic_datasets
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    run = tool("--source", "synthetic_videos", "--num_examples", "4", "--seed", "3", "--paraphrase", "--random_weights",
               "--preset", "tiny", "--stages", ",".join(STAGES), "--codes", "--max_text", "64", "--batch_size", "2",
               "--examples_per_shard", "2", "--out", str(tmp_path), env=env)
    assert run.returncode == 0, run.stderr
    assert "4 usable clips; bad: {}" in run.stdout
    for info in infos:
        got, want = records.RecordSource(tmp_path / info.stage), records.RecordSource(full / info.stage)
        assert got.info == info
        for i in range(4):
            for name, value in want[i].items():
                np.testing.assert_allclose(got[i][name], value, atol=1e-5)


def test_models_from_a_converted_checkpoint(models, fixtures_dir, tmp_path):
    """The one loading function reads the components preparation runs, the config and the T5 tokenizers."""
    from landiff_jax import checkpoint

    for name in prepare.COMPONENTS:
        checkpoint.save_component(tmp_path, name, models.params[name])
    checkpoint.write_config(tmp_path, models.cfg, converted_from="test")
    for component in ("t5_lm", "t5_dit"):
        checkpoint.copy_text_tokenizer(fixtures_dir / "t5" / "lm_longest_left" / "t5",
                                       checkpoint.text_tokenizer_dir(tmp_path, component))
    loaded = prepare.load_frozen_models(tmp_path)
    assert loaded.cfg == models.cfg and loaded.has_codes
    assert loaded.weights == {"checkpoint": str(tmp_path.resolve())}
    for name in prepare.COMPONENTS:
        assert jax.tree.structure(loaded.params[name]) == jax.tree.structure(models.params[name])
        for got, want in zip(jax.tree.leaves(loaded.params[name]), jax.tree.leaves(models.params[name])):
            np.testing.assert_array_equal(got, want)
    assert all(type(t).__name__ == "T5TextTokenizer" for t in loaded.tokenizers.values())  # not byte-level ids


def test_default_batch_size_holds_one_full_size_clip_per_device():
    full, tiny = clips.ClipSpec(49, 480, 720), clips.ClipSpec(9, 64, 96)
    assert [prepare.default_batch_size(full, n) for n in (1, 2)] == [1, 2]
    assert [prepare.default_batch_size(tiny, n) for n in (1, 4)] == [8, 32]
    assert prepare.default_batch_size(clips.ClipSpec(49, 240, 360), 1) == 4


def test_flops_per_batch_count_every_clip_of_the_batch(video_list, models):
    """What tools/bench/prepare.py divides by the clip rate: XLA's count grows with the padded batch."""
    source, _ = clips.scan(video_list / "list.jsonl", SPEC, motion_score=0.1, workers=2)
    one, two = (prepare.StageExamples(source, models, STAGES, max_text=64, batch_size=b, codes=True).flops_per_batch()
                for b in (1, 2))
    assert one > 1e8 and two == pytest.approx(2 * one, rel=1e-3)
