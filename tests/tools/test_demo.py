"""The web demo's request function (landiff_jax/demo.py) on the tiny random-weight system, without
a server or a browser (tests/tools/test_demo_browser.py drives the page): a request after the
warm-up writes a 9-frame mp4 and compiles nothing; bad input raises gr.Error with the pipeline's
one line. Needs the `demo` extra (Gradio); skipped without it."""

from __future__ import annotations

import threading

import jax
import numpy as np
import pytest

from landiff_jax.config import LanDiffConfig
from landiff_jax.demo import Demo, frame_codes, handler, in_worker, plan_image
from landiff_jax.pipeline import LanDiff
from landiff_jax.video_io import read_mp4

gr = pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")

PROMPT = "a yellow triangle moves up on a gray background"  # another length than the warm-up's prompt


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    demo = Demo(LanDiff.random(LanDiffConfig.tiny()), tmp_path_factory.mktemp("videos"))
    demo.warm_up()
    return demo


@pytest.fixture
def compiles():
    """Names of the XLA compilations that happen during the test."""
    seen = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield seen
    jax.monitoring.unregister_event_duration_listener(listener)


def test_request_writes_the_video_and_compiles_nothing_after_warm_up(demo, compiles):
    # the form's values as Gradio hands them over (Number with precision 0: int or None; Slider: float)
    path, plan = handler(demo)(PROMPT, 7, 9, None, 7.5, 6.0, 0.1)
    assert compiles == []
    assert read_mp4(path).shape == (9, 64, 96, 3)  # LanDiffConfig.tiny: 9 frames of 64×96
    assert plan.dtype == np.uint8 and plan.ndim == 3 and plan.shape[1] > 3 * plan.shape[0] // 2  # 3 tiles in a row


@pytest.mark.parametrize("prompt, frames, steps, message", [
    ("", 9, 4, r"empty prompt\(s\) at position\(s\) \[0\]"),
    ("   ", 9, 4, r"empty prompt\(s\) at position\(s\) \[0\]"),
    (PROMPT, 8, 4, r"num_frames=8 is not supported; choose one of \[9\]"),
    (PROMPT, 9, 0, r"steps must be in \[2, 999\], got 0"),
])
def test_bad_input_is_a_one_line_gradio_error(demo, prompt, frames, steps, message):
    with pytest.raises(gr.Error) as error:
        handler(demo)(prompt, 7, frames, steps, 7.5, 6.0, 0.1)
    assert error.value.message == message.replace("\\", "")
    assert "\n" not in error.value.message


def test_in_worker_reports_in_the_calling_thread_and_reraises():
    caller, threads, seen = threading.get_ident(), [], []

    def work(callback):
        threads.append(threading.get_ident())
        for k in range(3):
            callback(k)
        return "done"

    assert in_worker(work, lambda event: seen.append((event, threading.get_ident()))) == "done"
    assert seen == [(0, caller), (1, caller), (2, caller)] and threads[0] != caller

    def fail(callback):
        raise ValueError("bad setting")

    with pytest.raises(ValueError, match="bad setting"):
        in_worker(fail, seen.append)


def test_plan_image_shows_each_frames_features_and_tokens():
    cfg = LanDiffConfig.tiny()  # I-frame 6 codes, P-frames 2 codes, 3 semantic frames of 4×6 features
    codes = np.array([5, 5, 9, 1, 2, 3, 5, 9, 9, 9])
    assert [c.tolist() for c in frame_codes(cfg, codes)] == [[5, 5, 9, 1, 2, 3], [5, 9], [9, 9]]
    features = np.zeros((3, 4, 6, 16), np.float32)
    features[1] = 1.0  # frame 1 differs from frames 0 and 2
    features[:, :, :3, 0] += 0.5  # left half differs from right half in every frame
    image = plan_image(cfg, codes, features)
    tile_w = round(120 * 96 / 64)
    centre = lambda f, x: image[16 + 60, f * (tile_w + 8) + x]  # noqa: E731 (label 16 px, tiles 120 px high)
    assert (centre(0, tile_w // 4) == centre(2, tile_w // 4)).all()
    assert (centre(0, tile_w // 4) != centre(1, tile_w // 4)).any()
    assert (centre(0, tile_w // 4) != centre(0, 3 * tile_w // 4)).any()
    cell = lambda f, k: image[16 + 120 + 4 + 2, f * (tile_w + 8) + k * 11 + 2]  # noqa: E731 (11 px cells)
    assert (cell(0, 0) == cell(0, 1)).all() and (cell(0, 2) == cell(1, 1)).all()  # same code, same colour
    assert (cell(0, 0) != cell(0, 2)).any()
