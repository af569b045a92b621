"""Long videos chunk by chunk (issue 17) on the tiny random-weight system: three LM groups give
every frame with one compiled function per stage, each chunk is the DiT run on its window with
the previous chunk's last latents kept clean, generate() is the chunks put together, and the
CLI streams the mp4. The in-process tests use the tiny system with a thinner VAE (8 channels):
the same code paths, a third of the compile time."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landiff_jax import lm
from landiff_jax.config import LanDiffConfig
from landiff_jax.pipeline import GenerateOptions, LanDiff
from landiff_jax.video_io import read_mp4
from tests.conftest import Compilations

REPO = Path(__file__).resolve().parents[2]
TINY = LanDiffConfig.tiny()
CFG = dataclasses.replace(TINY, vae=dataclasses.replace(TINY.vae, ch=8, num_groups=4))
LATENT_FRAMES = 9  # 3 LM groups of 3 frames; DiT chunks of 3: the first, then 1 kept clean + 2 new
FRAMES = CFG.video_frames(LATENT_FRAMES)  # 33
PROMPTS = ["a red fox"]
OPTIONS = GenerateOptions(num_frames=FRAMES, steps=2, seed=5)


@pytest.fixture(scope="module")
def pipe():
    return LanDiff.random(CFG)


@pytest.fixture(scope="module")
def streamed(pipe):
    """The chunks, and the functions traced while each was made."""
    chunks, traced = [], []
    with Compilations() as seen:
        for chunk in pipe.generate_stream(PROMPTS, OPTIONS):
            traced.append(seen.traced[sum(map(len, traced)):])
            chunks.append(chunk)
    return chunks, traced


def test_three_groups_give_every_frame_with_one_compile_per_stage(streamed):
    chunks, traced = streamed
    assert CFG.stream_prefix == 1 and CFG.stream_chunks(LATENT_FRAMES) == [(0, 0), (2, 1), (4, 1), (6, 1)]
    assert [c.frames.shape[1] for c in chunks] == [9, 8, 8, 8]
    assert [c.first_frame for c in chunks] == [0, 9, 17, 25]
    video = np.concatenate([c.frames for c in chunks], axis=1)
    assert video.shape == (1, FRAMES, *CFG.video_size, 3) and video.dtype == np.uint8
    assert [c.latents.shape[1] for c in chunks] == [3, 2, 2, 2]
    group = lm.num_codes(3, CFG.lm.iframe_tokens, CFG.lm.pframe_tokens, CFG.lm.segment_length)
    assert [c.codes.shape for c in chunks] == [(1, group)] * 3 + [(1, 0)]  # the LM writes a group when needed
    assert all(c.finite.all() for c in chunks)
    # no compile after the second chunk (the first compiles every stage, the second the later VAE chunk)
    assert traced[2] == [] and traced[3] == [], traced[2:]
    names = sum(traced, [])
    if any(names):  # jax names the traced functions
        for stage in ("group_steps", "sample_loop", "_window"):  # LM, DiT, semantic window: once for all chunks
            assert names.count(stage) == 1, (stage, names)
        assert names.count("_decode_chunk") == 2  # the VAE's first chunk and its later chunks


def test_each_chunk_is_its_window_with_the_previous_latents_kept_clean(pipe, streamed):
    """Chunk 1 again from the rule: latent frames [2, 5) of the video, whose semantic feature is
    group 0's frame 2 then group 1's frames 0, 1; the previous chunk's last latent frame kept
    clean; its draws from the seed's key folded with the chunk number."""
    chunks, _ = streamed
    groups = np.split(np.concatenate([c.codes for c in chunks], axis=1), 3, axis=1)
    feature = jnp.concatenate([pipe.semantic_feature(groups[0], 3)[:, 2:], pipe.semantic_feature(groups[1], 3)[:, :2]],
                              axis=1)
    context, uncond = pipe.text_context(PROMPTS)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(OPTIONS.seed), 1 << 20), 1)
    latents = pipe.sample_latents(context, uncond, feature, OPTIONS, key=key, prefix=chunks[0].latents[:, -1:])
    np.testing.assert_array_equal(np.asarray(latents)[:, :1], chunks[0].latents[:, -1:])
    np.testing.assert_allclose(np.asarray(latents)[:, 1:], chunks[1].latents, atol=1e-5, rtol=1e-5)


def test_long_lengths_and_windows_are_checked_before_any_work(pipe):
    streamed = r"or streamed: 17, 25, 33, \.\.\."
    with pytest.raises(ValueError, match=r"num_frames=29 is not supported; choose one of \[9\], " + streamed):
        pipe.generate_stream(PROMPTS, OPTIONS, num_frames=29)
    with pytest.raises(ValueError, match="lm_window must be >= 1"):
        pipe.generate_stream(PROMPTS, OPTIONS, lm_window=0)
    with pytest.raises(ValueError, match="codes have shape"):
        pipe.generate_stream(PROMPTS, OPTIONS, codes=np.zeros((1, 10), np.int32))


def test_generate_is_the_chunks_put_together_and_given_codes_redo_them(pipe, streamed):
    chunks, _ = streamed
    codes = np.concatenate([c.codes for c in chunks], axis=1)
    result = pipe.generate(PROMPTS, OPTIONS, codes=codes)
    np.testing.assert_array_equal(result.codes, codes)
    np.testing.assert_allclose(result.latents, np.concatenate([c.latents for c in chunks], axis=1), atol=1e-5)
    np.testing.assert_array_equal(result.videos, np.concatenate([c.frames for c in chunks], axis=1))
    assert result.videos.shape == (1, FRAMES, *CFG.video_size, 3) and result.finite.all()


@pytest.mark.slow
def test_generate_cli_streams_a_long_video(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "tools/generate.py", "--preset", "tiny", "--random_weights", "--num_frames", str(FRAMES),
           "--steps", "2", "--output_dir", str(tmp_path), "--prompt", "a red fox"]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{FRAMES} frames of 96×64 at 8 fps in 4 chunks" in result.stdout
    assert read_mp4(tmp_path / "000_a_red_fox.mp4").shape == (FRAMES, *TINY.video_size, 3)
    codes = lm.num_codes(LATENT_FRAMES, CFG.lm.iframe_tokens, CFG.lm.pframe_tokens, CFG.lm.segment_length)
    assert np.load(tmp_path / "000_a_red_fox.npy").shape == (codes,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000_a_red_fox.mp4", "000_a_red_fox.npy"]
