"""Train the tiny LanDiff (configs/tiny_landiff.py) from scratch on the synthetic world, every
stage through tools/train.py and its config, and write it as a converted checkpoint directory
that tools/generate.py and tools/evaluate.py load with --checkpoint.

  python tools/train_tiny.py --workdir runs/tiny [--out checkpoints/tiny] [--quick]

Order (each step is skipped when its output exists, so a rerun resumes; an interrupted training
continues from its last checkpoint). Two branches run side by side on the accelerator (the tiny
models leave most of it idle), then join:
  pixels:    render clips of the synthetic world      → WORKDIR/data/vae            (uint8 9×64×96)
             train the VAE            configs/tiny_vae.py → WORKDIR/runs/vae
  semantics: frozen models: random T5s + random Theia → WORKDIR/checkpoints/frozen
             prepare Theia features (tools/prepare_data.py) → WORKDIR/data/features/tokenizer
             train the semantic tokenizer configs/tiny_tokenizer.py → WORKDIR/runs/tokenizer
             + the tokenizer                          → WORKDIR/checkpoints/tokenizer
             prepare codes and Flan-T5 states         → WORKDIR/data/coded/lm
             train the LM                 configs/tiny_lm.py → WORKDIR/runs/lm
  joined:    + the VAE                                → WORKDIR/checkpoints/coded
             prepare VAE posteriors, codes, T5 states → WORKDIR/data/coded/diffusion
             measure the latent scale (1 / std of the sampled latents) → WORKDIR/scale_factor.json
             train the base DiT (text → latent) configs/tiny_dit.py → WORKDIR/runs/dit
             + the base DiT                           → WORKDIR/checkpoints/base
             --refine_rounds more phases (warm restarts, default 2) configs/tiny_dit_refine.py
                                                      → WORKDIR/runs/dit_refine{1,2,…}
             + the refined DiT, its control branch a zero-output copy → WORKDIR/checkpoints/refined{1,2,…}
             train the control branch configs/tiny_control.py → WORKDIR/runs/control
             the trained system                       → --out (default WORKDIR/checkpoints/tiny)
Loss curves: WORKDIR/plots/<stage>.png (tools/plot_metrics.py). Per-stage times are printed and
kept in WORKDIR/times.json.

--quick: a few clips and 3 updates per stage, float32 (a smoke test of the whole chain on CPU).
--reuse DIR: keep the text encoders, tokenizer, LM and VAE of a converted checkpoint of this
system (e.g. an earlier run's WORKDIR/checkpoints/base) and train only the diffusion stages.
--reuse_dit: with --reuse, also take DIR's base DiT as the end of the first DiT phase (train only
the refining phases and the control branch).
SIGTERM or Ctrl-C: the training under way saves its update and the command stops; run it again to
resume (a time-limited job can end with `timeout -s TERM`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from absl import flags, logging

from landiff_jax import cli, files

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

flags.DEFINE_string("workdir", None, "where data, runs, intermediate checkpoints and plots go", required=True)
flags.DEFINE_string("out", None, "the trained system's converted checkpoint (default WORKDIR/checkpoints/tiny)")
flags.DEFINE_bool("quick", False, "a few clips and 3 updates per stage (CPU smoke test)")
flags.DEFINE_integer("clips", 8192, "synthetic clips per dataset")
flags.DEFINE_string("reuse", None, "a converted checkpoint of this system whose text encoders, tokenizer, LM and "
                    "VAE are kept (only the diffusion stages are trained)")
flags.DEFINE_bool("reuse_dit", False, "with --reuse: also keep its base DiT as the first DiT phase's result "
                  "(only the refining DiT phases and the control branch are trained)")
flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "dtype the trained system's parameters are stored in "
                  "(the intermediate checkpoints keep float32)")
flags.DEFINE_integer("seed", 0, "seed of the synthetic clips and of the random frozen models")
# the shipped model's shape accuracy (48 prompts) went 41.7 % → 66.7 % → 81.2 % over its first two
# rounds (BUILD_NOTES.md, fifth training)
flags.DEFINE_integer("refine_rounds", 2, "rounds of configs/tiny_dit_refine.py after configs/tiny_dit.py, each a "
                     "warm restart from the previous round's EMA (one workdir holds one recipe: give another "
                     "workdir for another count)")
FLAGS = flags.FLAGS

QUICK_CLIPS = 8
QUICK_OVERRIDES = ("steps=3", "batch_size=4", "log_every=1", "checkpoint.every=3", "compute_dtype=float32")
# the random frozen models (T5s, Theia) are drawn as LanDiff.random draws component i: seed + i
COMPONENTS = ("t5_lm", "t5_dit", "lm", "tokenizer", "diffusion", "vae")


def log(text: str) -> None:
    print(f"[train_tiny] {text}", flush=True)


class Steps:
    """Runs named steps once: a step whose `done` check holds is skipped; times go to times.json."""

    def __init__(self, workdir: Path):
        self.file = workdir / "times.json"
        self.times = json.loads(self.file.read_text()) if self.file.is_file() else {}
        self.lock = threading.Lock()  # the branches record their times concurrently

    def run(self, name: str, done, fn) -> None:
        if done():
            log(f"{name}: done already ({self.times.get(name, '?')} s)")
            return
        start = time.perf_counter()
        log(f"{name} ...")
        fn()
        seconds = round(time.perf_counter() - start, 1)
        with self.lock:
            self.times[name] = seconds
            tmp = self.file.with_name(self.file.name + ".tmp")
            tmp.write_text(json.dumps(self.times, indent=1))
            tmp.replace(self.file)
        log(f"{name}: {seconds} s")


def side_by_side(*branches):
    """Run the branches (functions) concurrently and return their results; the first failure stops
    the whole command (the other branch's finished steps are kept for the rerun)."""
    with ThreadPoolExecutor(len(branches)) as pool:
        futures = [pool.submit(branch) for branch in branches]
        return [future.result() for future in futures]


class Tools:
    """Runs the tools of the steps (from the branches' threads too). A stop signal (SIGTERM,
    Ctrl-C) starts no further tool and reaches the running ones (SIGTERM passed on; Ctrl-C
    reaches a terminal's whole process group itself), whose training saves the update under way;
    the command ends once they have, and the same command resumes. A second Ctrl-C stops at once."""

    def __init__(self):
        self.running: set[subprocess.Popen] = set()
        self.stopped: int | None = None

    def listen(self) -> None:
        """Take SIGTERM and SIGINT (main thread)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)

    def stop(self, signum, frame=None) -> None:
        if signum == signal.SIGINT and self.stopped is not None:
            raise KeyboardInterrupt
        self.stopped = signum
        if signum == signal.SIGTERM:
            for child in list(self.running):
                child.send_signal(signum)

    def run(self, *args: str) -> None:
        name = Path(args[0]).name
        if self.stopped is not None:
            raise SystemExit(f"train_tiny: stopped before {name}; run the same command again to resume")
        command = [sys.executable, *args]
        log("$ " + " ".join(command))
        # the branches' processes share the accelerator: each allocates what it uses, not jax's
        # default 75 % of the device up front
        env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", **os.environ}
        with files.signals_deferred():  # a stop signal finds the child in `running`
            child = subprocess.Popen(command, cwd=REPO, env=env)
            self.running.add(child)
        try:
            returncode = child.wait()
        finally:
            self.running.discard(child)
        if self.stopped is not None and returncode:
            raise SystemExit(f"train_tiny: stopped during {name} (exit {returncode}); run the same command again "
                             f"to resume")
        if returncode:
            raise SystemExit(f"train_tiny: {name} failed (exit {returncode}); fix the cause and run the same "
                             f"command again to resume")


TOOLS = Tools()


# --- data ------------------------------------------------------------------------------------

def render_clips(out: Path, cfg, clips: int, seed: int) -> None:
    from landiff_jax.data import records
    from landiff_jax.data.sources import SyntheticClips, plan_dataset

    height, width = cfg.video_size
    source = SyntheticClips(frames=cfg.video_frames(cfg.dit.latent_frames), height=height, width=width, seed=seed)
    records.write_dataset(out, plan_dataset(source, clips, 1024), source.examples)


def prepare(checkpoint: Path, out: Path, stages: str, clips: int, seed: int, quick: bool) -> None:
    args = ["tools/prepare_data.py", "--source", "synthetic_videos", "--num_examples", str(clips),
            "--checkpoint", str(checkpoint), "--stages", stages, "--out", str(out), "--seed", str(seed),
            "--examples_per_shard", "1024", "--batch_size", "4" if quick else "64"]
    if stages != "tokenizer":  # the LM's targets and the control branch's condition
        args += ["--codes", "--diffusion_condition", "codes"]
    TOOLS.run(*args)


def measure_scale_factor(dataset: Path, limit: int = 2048) -> float:
    """1 / std of the latents training samples (mean + std·ε) over the first `limit` examples: the
    VAE's scale_factor, so that the DiT sees latents of unit variance (as CogVideoX's 1.15 does)."""
    import numpy as np

    from landiff_jax.data.records import RecordSource

    source = RecordSource(dataset)
    rows = [source[i] for i in range(min(limit, len(source)))]
    mean = np.stack([r["latent_mean"] for r in rows]).astype(np.float64)
    std = np.stack([r["latent_std"] for r in rows]).astype(np.float64)
    variance = mean.var() + np.mean(std**2)
    return float(1.0 / np.sqrt(variance))


# --- params ----------------------------------------------------------------------------------

def random_component(cfg, name: str, seed: int):
    """The random weights of a frozen (or not yet trained) component, drawn as prepare_data's
    random frozen models are (component i from seed + i); the tokenizer's with Theia."""
    from landiff_jax import pipeline, tokenizer
    from landiff_jax.nn.init import random_params

    abstract = (tokenizer.abstract_params(cfg.tokenizer, theia=True) if name == "tokenizer"
                else pipeline.abstract_params(cfg, "all")[name])
    return random_params(abstract, seed + COMPONENTS.index(name))


def run_params(run: Path):
    """(params, model_state) of a finished run: its EMA when it kept one, else its trainable params."""
    from landiff_jax.train.checkpointing import read_state

    state = read_state(run / "checkpoints")
    return state.get("ema", state["trainable"]), state["model_state"]


def tokenizer_params(theia, trained, model_state) -> dict:
    """A converted tokenizer: the trained encoder/decoder/projections, the EMA codebook, the frozen Theia."""
    from landiff_jax.tokenizer.losses import inference_params

    return {**inference_params(trained, model_state), "feature_extractor": theia}


def check_reuse(directory: Path, cfg, dit: bool = False) -> None:
    """`directory` is a converted checkpoint whose configs of every component but the diffusion
    model (with `dit`: its DiT too) are `cfg`'s (the VAE's scale factor aside); one line naming
    those that differ otherwise."""
    from landiff_jax import checkpoint
    from landiff_jax.convert.io import CheckpointError

    try:
        stored = checkpoint.load_config(directory, dtype="float32")
    except CheckpointError as e:
        raise SystemExit(f"train_tiny: --reuse: {e}")
    kept = ("t5_lm", "t5_dit", "tokenizer", "lm") + (("dit",) if dit else ())
    differ = [name for name in kept if getattr(stored, name) != getattr(cfg, name)]
    # the stored precision follows the stored dtype (a bf16 checkpoint's VAE says 'default')
    if dataclasses.replace(stored.vae, scale_factor=cfg.vae.scale_factor, precision=cfg.vae.precision) != cfg.vae:
        differ.append("vae")
    if differ:
        raise SystemExit(f"train_tiny: --reuse {directory}: its {', '.join(differ)} config differs from "
                         f"configs/tiny_landiff.py's")


def reused_components(directory: Path, cfg) -> dict:
    """Every component but the diffusion model from a converted checkpoint (`check_reuse`), in float32."""
    import numpy as np

    from landiff_jax import checkpoint

    check_reuse(directory, cfg)
    return {name: cast(checkpoint.load_component(directory, name), np.float32)
            for name in COMPONENTS if name != "diffusion"}


def control_start(main, tokenizer, seed: int) -> dict:
    """The diffusion params the control stage starts from: the trained base DiT, a control branch
    copying its first layers with zero output linears, a semantic conditioner with a zero conv_out
    (the controlled model equals the base), and the trained tokenizer's copy."""
    import jax

    from landiff_jax.diffusion import losses

    control_cfg = load_config("tiny_control.py").model
    trainable, frozen, _ = jax.device_get(losses.init_train_state(control_cfg, jax.random.PRNGKey(seed)))
    template = losses.merge_params(trainable, frozen)
    control = losses.control_from_base(control_cfg, main, template["dit"]["control"])
    return {"dit": {"main": main, "control": control}, "semantic": template["semantic"],
            "tokenizer": {k: v for k, v in tokenizer.items() if k != "feature_extractor"}}


def load_config(name: str, overrides=()):
    from landiff_jax import config_file

    return config_file.load(CONFIGS / name, overrides)


def cast(params, dtype):
    import jax
    import numpy as np

    return jax.tree.map(lambda x: np.asarray(x).astype(dtype), params)


def write_checkpoint(out: Path, cfg, params: dict, dtype: str = "float32") -> None:
    """A converted checkpoint directory (checkpoint.py's format) with parameters in `dtype`, written
    beside `out` and renamed."""
    import jax.numpy as jnp

    from landiff_jax import checkpoint

    cfg, params = cfg.with_dtype(dtype), cast(params, jnp.dtype(dtype))
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name in COMPONENTS:
        checkpoint.save_component(tmp, name, params[name], compress=True)  # the shipped one must stay small
    for component in checkpoint.TEXT_DIRS:
        checkpoint.write_byte_level_tokenizer(tmp, component)
    checkpoint.write_config(tmp, cfg, converted_from="tools/train_tiny.py (trained from scratch)")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


# --- the stages ------------------------------------------------------------------------------

def train_stage(steps: Steps, workdir: Path, stage: str, config: str, data: Path, quick: bool, *overrides: str):
    run = workdir / "runs" / stage

    def train():
        TOOLS.run("tools/train.py", "--config", str(CONFIGS / config), "--workdir", str(run), "--resume",
                  f"data.path={data}", *overrides, *(QUICK_OVERRIDES if quick else ()))
        (run / "DONE").write_text("")

    steps.run(f"train {stage}", (run / "DONE").is_file, train)
    plot = workdir / "plots" / f"{stage}.png"
    if not plot.is_file():
        plot.parent.mkdir(parents=True, exist_ok=True)
        TOOLS.run("tools/plot_metrics.py", str(run), "--out", str(plot), "--parts", "--log")
    return run


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments {argv[1:]}")
    if FLAGS.clips < 1:
        raise cli.UsageError(f"--clips must be >= 1, got {FLAGS.clips}")
    logging.set_verbosity(logging.WARNING)  # orbax's INFO lines for every component written
    workdir = Path(FLAGS.workdir).absolute()
    out = Path(FLAGS.out).absolute() if FLAGS.out else workdir / "checkpoints" / "tiny"
    for name, path in (("--workdir", workdir), ("--out", out)):
        if path.exists() and not path.is_dir():
            raise cli.UsageError(f"{name} {path} is not a directory")
    quick, seed = FLAGS.quick, FLAGS.seed
    clips = QUICK_CLIPS if quick else FLAGS.clips
    cfg = load_config("tiny_landiff.py")
    if FLAGS.reuse_dit and not FLAGS.reuse:
        raise cli.UsageError("--reuse_dit needs --reuse DIR (the checkpoint whose base DiT is kept)")
    least_rounds, why = (1, " with --reuse_dit (it trains only the refining rounds)") if FLAGS.reuse_dit else (0, "")
    if FLAGS.refine_rounds < least_rounds:
        raise cli.UsageError(f"--refine_rounds must be >= {least_rounds}{why}, got {FLAGS.refine_rounds}")
    if FLAGS.reuse:
        check_reuse(Path(FLAGS.reuse), cfg, FLAGS.reuse_dit)  # before anything is written
    workdir.mkdir(parents=True, exist_ok=True)
    TOOLS.listen()
    steps = Steps(workdir)
    data, ckpts = workdir / "data", workdir / "checkpoints"
    total = time.perf_counter()

    def pixels():
        steps.run("render clips", (data / "vae" / "dataset.json").is_file,
                  lambda: render_clips(data / "vae", cfg, clips, seed))
        return run_params(train_stage(steps, workdir, "vae", "tiny_vae.py", data / "vae", quick))[0]

    def semantics():
        steps.run("frozen models", (ckpts / "frozen").is_dir,
                  lambda: write_checkpoint(ckpts / "frozen", cfg, random))
        features = data / "features"
        steps.run("prepare features", (features / "tokenizer" / "dataset.json").is_file,
                  lambda: prepare(ckpts / "frozen", features, "tokenizer", clips, seed, quick))
        run = train_stage(steps, workdir, "tokenizer", "tiny_tokenizer.py", features / "tokenizer", quick)
        tokenizer = tokenizer_params(random["tokenizer"]["feature_extractor"], *run_params(run))
        steps.run("tokenizer checkpoint", (ckpts / "tokenizer").is_dir,
                  lambda: write_checkpoint(ckpts / "tokenizer", cfg, {**random, "tokenizer": tokenizer}))
        steps.run("prepare lm codes", (coded / "lm" / "dataset.json").is_file,
                  lambda: prepare(ckpts / "tokenizer", coded, "lm", clips, seed + 1, quick))
        lm = run_params(train_stage(steps, workdir, "lm", "tiny_lm.py", coded / "lm", quick))[0]
        return tokenizer, lm

    coded = data / "coded"
    if FLAGS.reuse:
        trained = {**reused_components(Path(FLAGS.reuse), cfg), "diffusion": random_component(cfg, "diffusion", seed)}
        tokenizer, coded_checkpoint = trained["tokenizer"], Path(FLAGS.reuse).absolute()
    else:
        random = {name: random_component(cfg, name, seed) for name in COMPONENTS}
        vae, (tokenizer, lm) = side_by_side(pixels, semantics)
        trained, coded_checkpoint = {**random, "vae": vae, "tokenizer": tokenizer, "lm": lm}, ckpts / "coded"
        steps.run("coded checkpoint", coded_checkpoint.is_dir, lambda: write_checkpoint(coded_checkpoint, cfg, trained))
    steps.run("prepare latents", (coded / "diffusion" / "dataset.json").is_file,
              lambda: prepare(coded_checkpoint, coded, "diffusion", clips, seed + 1, quick))
    scale_file = workdir / "scale_factor.json"
    steps.run("measure latent scale", scale_file.is_file, lambda: scale_file.write_text(
        json.dumps({"scale_factor": measure_scale_factor(coded / "diffusion")})))
    scale = json.loads(scale_file.read_text())["scale_factor"]
    log(f"VAE latent scale_factor = {scale:.6g}")
    scaled = f"model.scale_factor={scale!r}"

    system = dataclasses.replace(cfg, vae=dataclasses.replace(cfg.vae, scale_factor=scale))

    def dit_phase(stage: str, config: str, name: str, *start: str):
        """Train a base-DiT phase -> (checkpoints/<name>, its diffusion params): its EMA with a
        zero-start control branch."""
        run = train_stage(steps, workdir, stage, config, coded / "diffusion", quick, scaled, *start)
        diffusion = control_start(run_params(run)[0]["dit"]["main"], tokenizer, seed)
        steps.run(f"{name} checkpoint", (ckpts / name).is_dir,
                  lambda: write_checkpoint(ckpts / name, system, {**trained, "diffusion": diffusion}))
        return ckpts / name, diffusion

    if FLAGS.reuse_dit:
        refined = Path(FLAGS.reuse).absolute()
    else:
        refined, base = dit_phase("dit", "tiny_dit.py", "base")
    for round_ in range(1, FLAGS.refine_rounds + 1):  # warm restarts, each from the previous round's EMA
        refined, base = dit_phase(f"dit_refine{round_}", "tiny_dit_refine.py", f"refined{round_}",
                                  f"init_from={refined}")
    control_run = train_stage(steps, workdir, "control", "tiny_control.py", coded / "diffusion", quick, scaled,
                              f"init_from={refined}")

    control = run_params(control_run)[0]
    diffusion = {**base, "dit": {"main": base["dit"]["main"], "control": control["dit"]["control"]},
                 "semantic": control["semantic"]}
    steps.run("final checkpoint", out.is_dir,
              lambda: write_checkpoint(out, system, {**trained, "diffusion": diffusion}, FLAGS.dtype))
    log("times (s): " + ", ".join(f"{name} {seconds}" for name, seconds in steps.times.items()))
    log(f"total this run: {time.perf_counter() - total:.1f} s; the tiny LanDiff is in {out}")
    log(f"try: python tools/generate.py --checkpoint {out} --prompt \"a blue square moves up on a white background\"")


if __name__ == "__main__":
    cli.run(main)
