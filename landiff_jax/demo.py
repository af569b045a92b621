"""The web demo (tools/demo.py): one Gradio page over one loaded pipeline.

    demo = Demo(pipe, out_dir)      # pipe: a LanDiff (cli.load_model)
    demo.warm_up()                  # compiles every stage once, at start-up
    build_app(demo).launch(server_name="127.0.0.1", server_port=7860)

A request runs `Demo.run` (prompt and settings → an mp4 in `out_dir` and the semantic-token plan
as an image). Bad input raises the pipeline's one-line ValueError, which the page shows as an
error message (`gr.Error`). Requests queue and run one at a time on the one model. Gradio is
imported only by `handler` and `build_app` (the `demo` extra: pip install -e '.[demo]').
"""

from __future__ import annotations

import colorsys
import itertools
import queue
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from landiff_jax import progress as P
from landiff_jax.pipeline import GenerateOptions, LanDiff, config_defaults
from landiff_jax.video_io import write_mp4

WARM_UP_PROMPT = "a red circle moves left on a black background"
# LM-side prompt tokens padded to (masked): every prompt up to this length reuses the warm-up's compiled LM
TEXT_TOKENS = 128
KEEP_VIDEOS = 8  # the newest videos kept in out_dir (Gradio serves its own copy of each)
PLAN_TILE_HEIGHT = 120  # pixels of one semantic frame in the plan image


class Demo:
    """The request function of the page, on one pipeline; videos are written to `out_dir`."""

    def __init__(self, pipe: LanDiff, out_dir: str | Path, fps: int = 8):
        self.pipe = pipe
        self.out_dir = Path(out_dir)
        self.fps = fps
        self._names = itertools.count()

    @property
    def defaults(self) -> dict[str, Any]:
        """The form's initial values (`run`'s settings): the original CLI's and the config's."""
        options, config = GenerateOptions(), config_defaults(self.pipe.cfg)
        return dict(seed=options.seed, num_frames=config["num_frames"], steps=config["steps"],
                    lm_guidance=options.lm_guidance, dit_guidance=config["dit_guidance"],
                    motion_score=options.motion_score)

    def warm_up(self, progress: P.Callback | None = None) -> None:
        """One generation with the form's defaults: every stage is compiled before the first user
        (requests pass a progress callback, which the compiled loops take as static: so does this)."""
        self.run(WARM_UP_PROMPT, **self.defaults, progress=progress or (lambda event: None))

    def run(self, prompt: str, seed: int | None = None, num_frames: int | None = None, steps: int | None = None,
            lm_guidance: float | None = None, dit_guidance: float | None = None, motion_score: float | None = None,
            progress: P.Callback | None = None) -> tuple[Path, np.ndarray]:
        """One video: (its mp4 in out_dir, the plan image uint8 [h w 3]). A setting left empty
        (None) takes its default; bad input raises the pipeline's one-line ValueError."""
        settings = dict(seed=seed, num_frames=num_frames, steps=steps, lm_guidance=lm_guidance,
                        dit_guidance=dit_guidance, motion_score=motion_score)
        options = GenerateOptions(**{k: v for k, v in settings.items() if v is not None})
        result = self.pipe.generate(prompt, options, progress=progress, min_text_tokens=TEXT_TOKENS)
        if not result.finite[0]:
            raise ValueError("the video holds non-finite values (NaN/inf): corrupted weights or a numerical failure")
        latent_frames = self.pipe.cfg.latent_frames(options.num_frames)
        _, collected = self.pipe.semantic_feature(result.codes, latent_frames, collect=True)
        plan = plan_image(self.pipe.cfg, result.codes[0], np.asarray(collected["tokenizer_features"][0]))
        path = write_mp4(self.out_dir / f"{next(self._names):06d}-seed{options.seed}.mp4", result.videos[0],
                         fps=self.fps)
        for old in sorted(self.out_dir.glob("*.mp4"))[:-KEEP_VIDEOS]:
            old.unlink(missing_ok=True)
        return path, plan


def frame_codes(cfg, codes: np.ndarray) -> list[np.ndarray]:
    """A clip's semantic tokens [N] split per semantic frame: the I-frame's, then each P-frame's."""
    i, p = cfg.tokenizer.iframe_tokens, cfg.tokenizer.pframe_tokens
    return [codes[:i]] + [codes[k:k + p] for k in range(i, len(codes), p)]


def plan_image(cfg, codes: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The semantic-token plan as one image uint8 [h w 3]: per semantic frame, its decoded
    features ([t h w z], the tokenizer's Theia-space maps) on their 3 principal components (shared
    by all frames) as RGB, above its tokens as coloured cells (one colour per codebook entry)."""
    from PIL import Image, ImageDraw

    t, h, w, z = features.shape
    x = features.reshape(-1, z).astype(np.float64)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    rgb = np.zeros((len(x), 3))
    rgb[:, :min(3, len(vt))] = x @ vt[:3].T
    lo, hi = np.percentile(rgb, 1, axis=0), np.percentile(rgb, 99, axis=0)
    rgb = np.clip((rgb - lo) / np.maximum(hi - lo, 1e-12), 0, 1).reshape(t, h, w, 3)
    tile_w = round(PLAN_TILE_HEIGHT * cfg.video_size[1] / cfg.video_size[0])
    per_frame = frame_codes(cfg, codes)
    cell = max(4, min(16, tile_w // 16))
    columns = tile_w // cell
    cells_h = cell * -(-max(len(c) for c in per_frame) // columns)
    label_h, gap = 16, 8
    canvas = Image.new("RGB", (t * tile_w + (t - 1) * gap, label_h + PLAN_TILE_HEIGHT + 4 + cells_h), "white")
    draw = ImageDraw.Draw(canvas)
    for f in range(t):
        left = f * (tile_w + gap)
        kind = "I-frame" if f == 0 else f"P-frame {f}"
        draw.text((left, 2), f"{kind}: {len(per_frame[f])} tokens", fill="black")
        tile = Image.fromarray(np.round(rgb[f] * 255).astype(np.uint8)).resize((tile_w, PLAN_TILE_HEIGHT),
                                                                                Image.NEAREST)
        canvas.paste(tile, (left, label_h))
        for k, code in enumerate(per_frame[f]):
            r, c = divmod(k, columns)
            colour = tuple(round(255 * v) for v in colorsys.hsv_to_rgb((int(code) * 0.618034) % 1, 0.75, 0.9))
            top = label_h + PLAN_TILE_HEIGHT + 4 + r * cell
            draw.rectangle((left + c * cell, top, left + (c + 1) * cell - 1, top + cell - 1), fill=colour)
    return np.asarray(canvas)


def in_worker(work: Callable[[P.Callback], Any], report: P.Callback) -> Any:
    """work(callback) in a worker thread while this thread hands its progress events to `report`
    (Gradio's progress bar belongs to the request's thread); returns work's result or raises its error."""
    events: queue.SimpleQueue = queue.SimpleQueue()
    outcome: dict[str, Any] = {}

    def target():
        try:
            outcome["result"] = work(events.put)
        except BaseException as e:  # noqa: BLE001 (re-raised in the request's thread)
            outcome["error"] = e

    worker = threading.Thread(target=target, name="landiff-demo-request", daemon=True)
    worker.start()
    while worker.is_alive() or not events.empty():
        try:
            report(events.get(timeout=0.1))
        except queue.Empty:
            pass
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def handler(demo: Demo):
    """The page's request function: Demo.run with Gradio's progress bar; a ValueError becomes
    gr.Error (its one line shown in the page)."""
    import gradio as gr

    def generate(prompt, seed, num_frames, steps, lm_guidance, dit_guidance, motion_score,
                 progress=gr.Progress()):
        def report(event: P.Progress) -> None:
            if event.event == "step":
                progress((event.step, event.total), desc=event.stage)
            else:
                progress(None, desc=str(event))

        settings = dict(seed=seed, num_frames=num_frames, steps=steps, lm_guidance=lm_guidance,
                        dit_guidance=dit_guidance, motion_score=motion_score)
        try:
            path, plan = in_worker(lambda callback: demo.run(prompt, **settings, progress=callback), report)
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None
        return str(path), plan

    return generate


def build_app(demo: Demo, title: str = "LanDiff (JAX)", note: str | None = None):
    """The page (gr.Blocks, queued: one request at a time); `note` (markdown) is shown under the title."""
    import gradio as gr

    cfg, d = demo.pipe.cfg, demo.defaults
    h, w = cfg.video_size
    with gr.Blocks(title=title, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"# {title}\nText → semantic tokens (LM) → video (DiT + VAE): {w}×{h} at {demo.fps} fps."
                    + (f"\n\n{note}" if note else ""))
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=2, placeholder=WARM_UP_PROMPT, elem_id="prompt")
                with gr.Row():
                    seed = gr.Number(d["seed"], label="Seed", precision=0, elem_id="seed")
                    frames = gr.Number(d["num_frames"], label="Frames", precision=0, elem_id="frames",
                                       info=f"one of {cfg.valid_video_frames()}")
                    steps = gr.Number(d["steps"], label="Diffusion steps", precision=0, elem_id="steps")
                lm_guidance = gr.Slider(1, 15, d["lm_guidance"], step=0.5, label="LM guidance")
                dit_guidance = gr.Slider(1, 15, d["dit_guidance"], step=0.5, label="DiT guidance")
                motion_score = gr.Slider(0, 1, d["motion_score"], step=0.05, label="Motion score")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Video", autoplay=True, loop=True, elem_id="video")
                gr.Markdown("**Semantic-token plan**: per semantic frame, the features its tokens decode to "
                            "(3 principal components as RGB) and the tokens (one colour per codebook entry)")
                plan = gr.Image(show_label=False, type="numpy", elem_id="plan")
        run.click(handler(demo), [prompt, seed, frames, steps, lm_guidance, dit_guidance, motion_score],
                  [video, plan])
    return app.queue(default_concurrency_limit=1)
