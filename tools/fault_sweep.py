"""Issue 13's sweep: bad inputs and faults as a careful user meets them, against every tool.

  python tools/fault_sweep.py --out /tmp/sweep [--only PATTERN] [--jobs 2] [--list]

Each case is data (`Case`): a name and category, setup steps that build its inputs in its own
directory <out>/cases/<name> (copies of the shipped checkpoints/tiny and of the e2e fixture's
released tree, corrupted there; the originals are never touched), the command, how it is run
(plainly, two at once, or signalled when a line appears), and what must happen. Every case runs
as a subprocess with a timeout and gets one verdict:

  OK         a one-line error and a non-zero exit, or the right behaviour
  SILENT     exit 0 on bad input, or garbage written
  LOSS       a good existing file changed or removed, or a partial file at a final path
  TRACEBACK  a Python traceback for a user error
  HANG       the timeout passed
  LATE       the right error, but only after the weights were read ("loading" was printed)
  WRONG      anything else amiss: not one line, the wrong exit status, temporaries or an output
             directory left behind, the expected line or behaviour missing

One line per case as it ends, then a table (category × verdict); exit 1 unless every case is OK.
Logs of every case: <out>/logs/<name>.txt. --only: a regular expression searched in
"<category>/<name>". A full disk is a small tmpfs (root); elsewhere a file-size limit
(RLIMIT_FSIZE) makes the writes fail instead. The parity fixtures are found at
$LANDIFF_FIXTURES or ../shared/fixtures beside the checkout (--fixtures).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from absl import flags

from landiff_jax import cli

REPO = Path(__file__).resolve().parents[1]

flags.DEFINE_string("out", None, "working directory of the sweep (inputs, outputs, logs); emptied first", required=True)
flags.DEFINE_string("only", None, "run only the cases whose '<category>/<name>' matches this regular expression")
flags.DEFINE_integer("jobs", 2, "cases run at once")
flags.DEFINE_bool("list", False, "list the cases and exit")
flags.DEFINE_string("fixtures", None, "the parity fixtures (default: $LANDIFF_FIXTURES, else ../shared/fixtures)")
flags.DEFINE_bool("tmpfs", True, "a full disk is a small tmpfs when root may mount one; --notmpfs: a file-size limit "
                  "(RLIMIT_FSIZE) instead, as without root")
FLAGS = flags.FLAGS

VERDICTS = ("OK", "SILENT", "LOSS", "TRACEBACK", "HANG", "LATE", "WRONG")
SHIPPED = REPO / "checkpoints" / "tiny"
E2E = "e2e/t2v_17f_64x96"
PROMPT = "a red circle moves left on a black background"
STEM = "000_a_red_circle_moves_left_on_a_black_background"  # generate.py's name for PROMPT
TINY_CODES = 32  # semantic tokens of the tiny system's 9 frames
TINY_CODEBOOK = 256
TRACEBACK = "Traceback (most recent call last)"
NOISE = re.compile(r"os\.fork|RuntimeWarning|^I\d{4} |INFO:", re.M)  # what a quiet tool never prints


# ---- what must happen -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Error:
    """A refusal: exit status `rc` (any non-zero when None), stderr's first line names the error
    and matches `text`; at most `lines` lines on stderr (a list, e.g. every missing file, may
    follow); `early`: refused before any weight is read."""

    text: str
    rc: int | None = None
    lines: int = 1
    early: bool = True


@dataclasses.dataclass(frozen=True)
class Works:
    """The right behaviour: exit 0, quiet, and `check(d, stdout)` -> (verdict, why) or None."""

    check: Callable[[Path, str], tuple[str, str] | None] | None = None


@dataclasses.dataclass(frozen=True)
class Stopped:
    """The interrupted run itself is judged: it ended by the signal (exit 128 + signum after
    SIGTERM), left the `keep` files as they were, no temporary and no child process."""


@dataclasses.dataclass(frozen=True)
class Interrupt:
    """What happens to a first run when its output matches `when` (a regex on a stdout line, or
    the name of a condition in WAIT_FOR): a signal ('SIGTERM', 'SIGKILL'), after which the same
    command runs again and that run is judged (unless the case expects `Stopped`), or
    'fill_disk': the case's tmpfs fills up and that run is judged."""

    action: str
    when: str


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    category: str
    tool: str  # tools/<tool>
    args: tuple[str, ...]  # {d}: the case directory, {repo}, {e2e}: the fixture's tree, {shipped}
    expect: Error | Works | Stopped
    setup: tuple[Callable[["Context"], None], ...] = ()
    keep: tuple[str, ...] = ()  # files (below d) that must come out unchanged
    absent: tuple[str, ...] = ()  # paths (below d) that must not exist afterwards
    first: Interrupt | None = None  # what happens during a first run (see Interrupt)
    race: bool = False  # two copies at once: one does the work, the other refuses in one line
    env: tuple[tuple[str, str], ...] = ()
    timeout: float = 120.0
    needs_e2e: bool = False

    @property
    def label(self) -> str:
        return f"{self.category}/{self.name}"


class Context:
    """A case's directory and the cleanups its setup registered (unmounts)."""

    def __init__(self, case: Case, root: Path, fixtures: Path):
        self.case, self.root, self.fixtures = case, root, fixtures
        self.d = root / "cases" / case.category / case.name
        self.cleanups: list[Callable[[], None]] = []
        self.env: dict[str, str] = {}
        self.limit_file_size: int | None = None  # RLIMIT_FSIZE of the command (no tmpfs)
        self.fill: tuple[Path, int] | None = None  # (tmpfs, KiB to leave free) to fill up
        self.extra_args: list[str] = []

    def path(self, relative: str) -> Path:
        return self.d / relative


# ---- setup steps (each a function of the Context; the cases combine them) ---------------------

def write(relative: str, data: bytes | str):
    def step(ctx: Context) -> None:
        path = ctx.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return step


def copy_shipped(relative: str = "ckpt"):
    return lambda ctx: shutil.copytree(SHIPPED, ctx.path(relative))


def copy_e2e(relative: str = "case"):
    return lambda ctx: shutil.copytree(ctx.fixtures / E2E, ctx.path(relative), ignore=shutil.ignore_patterns("io.npz"))


def largest_file(directory: Path) -> Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def flip(relative: str, count: int = 8):
    """Flip `count` bytes in the middle of a file (or of the largest file below a directory)."""
    def step(ctx: Context) -> None:
        path = ctx.path(relative)
        path = largest_file(path) if path.is_dir() else path
        data = bytearray(path.read_bytes())
        for i in range(count):
            data[len(data) // 2 + i] ^= 0xFF
        path.write_bytes(bytes(data))
    return step


def flip_at(relative: str, offset: int):
    """Flip the byte at `offset` (e.g. inside a header)."""
    def step(ctx: Context) -> None:
        path = ctx.path(relative)
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
    return step


def new_manifest(relative: str):
    """A component's checksum manifest written afresh (after a change that is not disk damage)."""
    def step(ctx: Context) -> None:
        from landiff_jax.checkpoint import write_manifest

        write_manifest(ctx.path(relative))
    return step


def truncate(relative: str, keep: float = 0.5):
    def step(ctx: Context) -> None:
        path = ctx.path(relative)
        path = largest_file(path) if path.is_dir() else path
        path.write_bytes(path.read_bytes()[:int(path.stat().st_size * keep)])
    return step


def remove(relative: str):
    """Remove a file or directory ('<dir>/*': the largest file below <dir>)."""
    def step(ctx: Context) -> None:
        path = largest_file(ctx.path(relative[:-2])) if relative.endswith("/*") else ctx.path(relative)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return step


def edit_json(relative: str, change: Callable[[dict], object]):
    """Rewrite a JSON file with `change(data)` applied (it edits in place, or returns a replacement)."""
    def step(ctx: Context) -> None:
        path = ctx.path(relative)
        data = json.loads(path.read_text())
        replaced = change(data)
        path.write_text(json.dumps(data if replaced is None else replaced))
    return step


def set_key(*keys_and_value):
    """edit_json's change: data[k1][k2]... = value."""
    *keys, value = keys_and_value

    def change(data):
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def sums_with_a_wrong_one(relative: str, wrong: str):
    """The e2e tree's own CHECKSUM.md5 with the sum of `wrong` changed."""
    def step(ctx: Context) -> None:
        lines = (ctx.fixtures / E2E / "ckpts/LanDiff/CHECKSUM.md5").read_text().splitlines()
        write(relative, "".join(("0" * 32 + "  ./" + wrong if line.endswith(wrong) else line) + "\n"
                                for line in lines))(ctx)
    return step


def save_npy(relative: str, make: Callable[[], object]):
    def step(ctx: Context) -> None:
        import numpy as np

        path = ctx.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, make(), allow_pickle=True)
    return step


def good_video(relative: str):
    """A complete, playable mp4 (9 frames of 96×64) and its codes beside it: a user's good result."""
    def step(ctx: Context) -> None:
        import numpy as np

        from landiff_jax.video_io import write_mp4

        path = ctx.path(relative)
        frames = np.zeros((9, 64, 96, 3), np.uint8)
        frames[..., 1] = 200
        write_mp4(path, frames)
        np.save(path.with_suffix(".npy"), np.arange(TINY_CODES))
    return step


def stale_temporaries(directory: str, stem: str):
    """Temporaries a SIGKILLed generate left (a dead writer's pid, an hour old)."""
    def step(ctx: Context) -> None:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        old = time.time() - 3600
        for suffix in (".mp4", ".npy"):
            path = ctx.path(directory) / f".{stem}{suffix}.tmp-{dead}-k3x9q1z8{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"half a video")
            os.utime(path, (old, old))
    return step


def small_disk(relative: str, size_kib: int, leave_kib: int | None = None):
    """A tmpfs of `size_kib` at `relative` (root), filled up to `leave_kib` free after the other
    setup steps ran (so that the tool's write fails), or at the case's Interrupt; without one
    (--notmpfs, or not root) the command's file-size limit RLIMIT_FSIZE is set to leave_kib
    (else size_kib), and its compilation cache is off (its entries would not fit)."""
    def step(ctx: Context) -> None:
        mount = ctx.path(relative)
        mount.mkdir(parents=True, exist_ok=True)
        if FLAGS.tmpfs and mount_tmpfs(mount, f"size={size_kib}k"):
            ctx.cleanups.append(lambda: subprocess.run(["umount", "-l", str(mount)], check=False))
            if leave_kib is not None:
                ctx.fill = (mount, leave_kib)
        else:
            ctx.limit_file_size = 1024 * (leave_kib if leave_kib is not None else size_kib)
            if ctx.case.tool in COMPILING_TOOLS:
                ctx.extra_args.append("--nocompilation_cache")
    return step


COMPILING_TOOLS = ("generate.py", "evaluate.py", "reconstruct.py", "prepare_data.py", "train.py")  # cli.run(compiles=)


def mount_tmpfs(mount: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                          capture_output=True).returncode == 0


def fill_disk(mount: Path, leave_kib: int) -> None:
    """Fill the file system of `mount` until only about `leave_kib` KiB are free."""
    filler = mount / "filler"
    free = shutil.disk_usage(mount).free - leave_kib * 1024
    if free > 0:
        with open(filler, "ab") as f:
            f.write(b"\0" * free)


def read_only(relative: str):
    """A directory nothing can be written to: a read-only tmpfs (root, who ignores permissions),
    else mode 0555."""
    def step(ctx: Context) -> None:
        path = ctx.path(relative)
        path.mkdir(parents=True, exist_ok=True)
        if mount_tmpfs(path, "ro,size=64k"):
            ctx.cleanups.append(lambda: subprocess.run(["umount", "-l", str(path)], check=False))
        else:
            path.chmod(0o555)
            ctx.cleanups.append(lambda: path.chmod(0o755))
    return step


def shadow_ffmpeg(ctx: Context) -> None:
    """imageio_ffmpeg fails to import (not installed), first on the command's PYTHONPATH."""
    package = ctx.path("shadow/imageio_ffmpeg")
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    ctx.env["PYTHONPATH"] = f"{ctx.path('shadow')}{os.pathsep}{REPO}"


def torch_save(relative: str, make: Callable[[object], object]):
    """torch.save(make(torch)) to `relative`."""
    def step(ctx: Context) -> None:
        import torch

        torch.save(make(torch), ctx.path(relative))
    return step


def edit_torch(relative: str, change: Callable[[dict], None]):
    def step(ctx: Context) -> None:
        import torch

        path = ctx.path(relative)
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)
    return step


class Payload:
    """A pickle that runs a shell command when loaded without weights_only (it creates a marker)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_pickle(relative: str, marker: str, torch_file: bool = False):
    """A plain pickle (or a torch.save zip file) of a state dict that runs code when loaded unsafely."""
    def step(ctx: Context) -> None:
        import pickle

        state = {"state_dict": Payload(str(ctx.path(marker)))}
        if torch_file:
            import torch

            torch.save(state, ctx.path(relative))
        else:
            ctx.path(relative).write_bytes(pickle.dumps(state))
    return step


def resave_component(relative: str, component: str, change: Callable):
    """Re-save a component of a converted checkpoint copy with `change(params)` applied, with a
    fresh checksum manifest (as a buggy writer, not a damaged disk, would leave it)."""
    def step(ctx: Context) -> None:
        from landiff_jax import checkpoint

        directory = ctx.path(relative)
        params = change(checkpoint.load_component(directory, component))
        shutil.rmtree(directory / "params" / component)
        checkpoint.save_component(directory, component, params)
    return step


def nan_params(params):
    import jax
    import numpy as np

    return jax.tree.map(lambda a: np.full_like(a, np.nan), params)


def first_leaf(change):
    """params -> params with `change` applied to the first leaf only."""
    def apply(params):
        import jax

        leaves, tree = jax.tree.flatten(params)
        return jax.tree.unflatten(tree, [change(leaves[0]), *leaves[1:]])
    return apply


def make_dead_lock(relative: str):
    def step(ctx: Context) -> None:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        write(relative, dead)(ctx)
    return step


# ---- checks of a run that worked ------------------------------------------------------------

def decodes(path: Path, frames: int) -> str | None:
    from landiff_jax.video_io import count_frames

    if not path.is_file():
        return f"{path.name} was not written"
    try:
        got = count_frames(path)
    except Exception as e:  # noqa: BLE001 (any decoder failure means garbage)
        return f"{path.name} does not decode: {e}"
    return None if got == frames else f"{path.name} decodes to {got} frames, not {frames}"


def numbered_outputs(d: Path, stdout: str):
    out = d / "out"
    problem = decodes(out / f"{STEM}-1.mp4", 9)
    if problem:
        return "SILENT", problem
    if not (out / f"{STEM}-1.npy").is_file():
        return "WRONG", "the new codes were not written beside the new video"
    leftovers = [p.name for p in out.iterdir() if ".tmp-" in p.name]
    if leftovers:
        return "WRONG", f"stale temporaries not removed: {leftovers}"
    return None


def converted_ok(relative: str, marked: bool = False):
    def check(d: Path, stdout: str):
        from landiff_jax import checkpoint

        out = d / relative
        try:
            checkpoint.load_config(out)
            checkpoint.verify(out, "full")
        except Exception as e:  # noqa: BLE001
            return "SILENT", f"the conversion exited 0 but {out} is not a good checkpoint: {e}"
        if marked:
            record = json.loads((out / checkpoint.CONFIG_FILE).read_text()).get("checksums", {})
            if not record.get("differs_from_published") or "differs from the published" not in stdout:
                return "WRONG", "the tree's own CHECKSUM.md5 differs from the published sums, but that was not said"
        return None
    return check


def plot_written(d: Path, stdout: str):
    png = d / "new" / "loss.png"
    if not png.is_file() or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        return "SILENT", "loss.png is not a PNG"
    return None


# ---- the cases --------------------------------------------------------------------------------

def gen(name: str, *args: str, expect, setup=(), category: str = "generate-args", **kw) -> Case:
    """A generate.py case writing into {d}/out (which a refusal must not create)."""
    absent = kw.pop("absent", ("out",) if isinstance(expect, Error) else ())
    return Case(name, category, "generate.py", ("--output_dir", "{d}/out", *args), expect, tuple(setup),
                absent=absent, **kw)


def arg(name: str, text: str, *args: str, rc: int = 2, **kw) -> Case:
    """A bad generate argument: refused in one line, exit 2, before any weight is read."""
    return gen(name, "--prompt", PROMPT, *args, expect=Error(text, rc=rc), **kw)


CODES_ARGS = ("--prompt", PROMPT, "--codes", "{d}/codes.npy")


def codes_case(name: str, text: str, make: Callable[[], object], *args: str) -> Case:
    return gen(name, *CODES_ARGS, *args, expect=Error(text, rc=2), setup=(save_npy("codes.npy", make),),
               category="generate-codes")


def corrupt(name: str, text: str, *steps, rc: int = 1, early: bool = False, **kw) -> Case:
    """A damaged copy of the shipped checkpoint: generate refuses it in one line."""
    return gen(name, "--checkpoint", "{d}/ckpt", "--prompt", PROMPT, expect=Error(text, rc=rc, early=early),
               setup=(copy_shipped(), *steps), category="checkpoint", **kw)


def convert(name: str, text: str, *args: str, setup=(), tree: str = "{e2e}", rc: int = 1, lines: int = 1,
            out: str = "{d}/out", config: tuple[str, ...] = ("--original_config", "{e2e}/meta.json"), **kw) -> Case:
    """tools/convert.py on the e2e fixture's tree (or a damaged copy): refused in one line."""
    command = ("--release", f"{tree}/ckpts/LanDiff", "--flan_t5", f"{tree}/flan-t5", *config, "--out", out, *args)
    absent = kw.pop("absent", ("out",))
    return Case(name, "convert", "convert.py", command, Error(text, rc=rc, lines=lines), tuple(setup),
                absent=absent, needs_e2e=True, **kw)


def tool(tool_name: str, name: str, text: str, *args: str, rc: int | None = None, setup=(), lines: int = 1,
         **kw) -> Case:
    return Case(name, tool_name.removesuffix(".py"), tool_name, args, Error(text, rc=rc, lines=lines),
                tuple(setup), **kw)


N = TINY_CODES
CODES_17 = 56  # the tiny system's tokens of 17 frames (two chunks)
OLD_PAIR = (f"out/{STEM}.mp4", f"out/{STEM}.npy")
GOOD_CODES = save_npy("codes.npy", lambda: np.arange(N, dtype="int64")[None] % TINY_CODEBOOK)
GENERATE_QUICK = ("--prompt", PROMPT, "--codes", "{d}/codes.npy", "--steps", "2", "--seed", "1")
ONE_CHUNK_DECODE = r"^VAE: decode"
SWEEP_META = "{d}/cases"

CASES: list[Case] = [
    # ---- 1. video writes: a failed write is an error and never replaces a good file
    gen("disk_full_keeps_the_old_video", *GENERATE_QUICK, "--overwrite", category="video",
        expect=Error(r"no space left on device|ffmpeg failed", rc=1, early=False),  # (or the file-size limit)
        setup=(small_disk("out", 512, leave_kib=4), good_video(f"out/{STEM}.mp4"), GOOD_CODES),
        keep=OLD_PAIR, absent=(), timeout=400),
    gen("existing_outputs_get_the_next_name", *GENERATE_QUICK, category="video", expect=Works(numbered_outputs),
        setup=(good_video(f"out/{STEM}.mp4"), stale_temporaries("out", STEM), GOOD_CODES), keep=OLD_PAIR,
        timeout=400),
    gen("sigterm_while_the_video_is_written", *GENERATE_QUICK, "--num_frames", "17", "--overwrite", category="video",
        expect=Stopped(), first=Interrupt("SIGTERM", "ffmpeg"),
        setup=(good_video(f"out/{STEM}.mp4"), save_npy("codes.npy", lambda: np.zeros((1, CODES_17), int))),
        keep=OLD_PAIR, absent=(), timeout=400),
    gen("nan_weights_give_no_video", "--checkpoint", "{d}/ckpt", *GENERATE_QUICK, category="video",
        expect=Error("non-finite", rc=1, early=False),
        setup=(copy_shipped(), resave_component("ckpt", "vae", nan_params), GOOD_CODES),
        absent=(f"out/{STEM}.mp4", f"out/{STEM}.npy"), timeout=400),
    gen("no_video_encoder", "--prompt", PROMPT, category="video", expect=Error("pip install imageio-ffmpeg", rc=1),
        setup=(shadow_ffmpeg,)),
    tool("reconstruct.py", "no_video_encoder", "pip install imageio-ffmpeg", "{d}/clip.mp4", "--random_weights",
         rc=1, setup=(write("clip.mp4", b"never decoded"), shadow_ffmpeg)),
    tool("evaluate.py", "no_video_encoder", "pip install imageio-ffmpeg", "--ground_truth", "--subset", "1",
         "--output_dir", "{d}/eval", rc=1, setup=(shadow_ffmpeg,), absent=("eval",)),
    tool("prepare_data.py", "no_video_encoder", "pip install imageio-ffmpeg", "--source", "videos", "--list",
         "{d}/clips.jsonl", "--random_weights", "--stages", "tokenizer", "--out", "{d}/data",
         setup=(write("clips.jsonl", '{"path": "x.mp4", "caption": "a fox"}\n'), shadow_ffmpeg), absent=("data",)),
    gen("output_dir_is_a_file", "--prompt", PROMPT, category="video", expect=Error("is a file, not a directory", rc=2),
        setup=(write("out", "a file"),), absent=()),
    gen("output_dir_below_a_file", "--prompt", PROMPT, "--output_dir", "{d}/file/out", category="video",
        expect=Error("is a file, not a directory", rc=2), setup=(write("file", "a file"),)),
    gen("output_dir_read_only", "--prompt", PROMPT, "--output_dir", "{d}/ro/out", category="video",
        expect=Error("not writable", rc=2), setup=(read_only("ro"),)),

    # ---- 2. a damaged converted checkpoint is found, naming the component
    corrupt("flipped_bytes_diffusion", "component 'diffusion' is corrupted", flip("ckpt/params/diffusion")),
    corrupt("flipped_bytes_text_encoder", "component 't5_lm' is corrupted", flip("ckpt/params/t5_lm")),
    corrupt("truncated_data_file", "component 'diffusion' is corrupted", truncate("ckpt/params/diffusion")),
    corrupt("deleted_data_file", "component 'diffusion' is corrupted.*missing", remove("ckpt/params/diffusion/*")),
    corrupt("missing_component", r"missing component 'vae'|component 'vae'", remove("ckpt/params/vae")),
    corrupt("stray_file", "component 'lm' is corrupted.*unexpected file", write("ckpt/params/lm/stray", "x")),
    corrupt("damaged_manifest", "checksum manifest .* is not valid JSON", write("ckpt/params/lm.sha256.json", "{")),
    corrupt("missing_manifest_and_flipped_bytes", "component 'diffusion' has no checksum manifest",
            remove("ckpt/params/diffusion.sha256.json"),
            flip("ckpt/params/diffusion")),
    corrupt("text_tokenizer_marker_removed", "text tokenizer 'flan_t5'", remove("ckpt/text/flan_t5/byte_level.json"),
            early=True),
    corrupt("no_config_file", "not a converted LanDiff checkpoint", remove("ckpt/landiff_config.json"), rc=2,
            early=True),
    corrupt("config_not_json", "not valid JSON", write("ckpt/landiff_config.json", "{\"version\": 1,"), rc=2,
            early=True),
    corrupt("config_future_version", "landiff_config.json", edit_json("ckpt/landiff_config.json",
                                                                        set_key("version", 99)), rc=2, early=True),
    corrupt("config_unknown_field", "landiff_config.json", edit_json("ckpt/landiff_config.json",
                                                                       set_key("config", "lm", "colour", 3)),
            rc=2, early=True),
    corrupt("config_zero_size", "its sizes describe no model", edit_json("ckpt/landiff_config.json",
                                                                           set_key("config", "lm", "hidden", 0))),
    corrupt("config_size_not_a_number", "'config.lm.hidden' must be a whole number",
            edit_json("ckpt/landiff_config.json", set_key("config", "lm", "hidden", "wide")), rc=2, early=True),
    corrupt("config_integer_dtype", "must name a floating-point dtype", edit_json(
        "ckpt/landiff_config.json", set_key("config", "vae", "dtype", "int8")), rc=2, early=True),
    corrupt("config_other_sizes", "component 'lm' does not match", edit_json(
        "ckpt/landiff_config.json", set_key("config", "lm", "num_layers", 5))),
    corrupt("stored_shape_differs", "component 'lm'", resave_component("ckpt", "lm", first_leaf(
        lambda a: np.zeros((*a.shape[:-1], a.shape[-1] + 1), a.dtype)))),
    corrupt("stored_dtype_integer", "component 'lm'.*dtype", resave_component("ckpt", "lm", first_leaf(
        lambda a: np.zeros(a.shape, "int32")))),
    corrupt("orbax_metadata_damaged", "component 'vae'", write("ckpt/params/vae/_METADATA", "{oops"),
            new_manifest("ckpt/params/vae")),
    gen("checkpoint_missing", "--checkpoint", "{d}/nowhere", "--prompt", PROMPT, category="checkpoint",
        expect=Error("checkpoint directory not found", rc=2)),

    # ---- 3. every generate argument, before any weight is read
    arg("steps_zero", r"steps must be in \[2, 999\]", "--steps", "0"),
    arg("steps_one", r"steps must be in \[2, 999\]", "--steps", "1"),
    arg("steps_too_many", r"steps must be in \[2, 999\]", "--steps", "1000"),
    arg("steps_not_a_number", "steps", "--steps", "ten"),
    arg("temperature_zero", "temperature must be > 0", "--temperature", "0"),
    arg("top_p_zero", r"top_p must be in \(0, 1\]", "--top_p", "0"),
    arg("top_k_zero", "top_k must be >= 1", "--top_k", "0"),
    arg("top_k_above_codebook", "top_k", "--top_k", "100000"),
    arg("top_k_with_top_p", "top_k and top_p cannot be used together", "--top_k", "5", "--top_p", "0.9"),
    arg("lm_guidance_nan", "lm_guidance must be a finite", "--lm_guidance", "nan"),
    arg("lm_guidance_negative", "lm_guidance must be >= 0", "--lm_guidance", "-2"),
    arg("dit_guidance_nan", "dit_guidance must be a finite", "--dit_guidance", "nan"),
    arg("dit_guidance_negative", "dit_guidance must be >= 0", "--dit_guidance", "-1"),
    arg("dit_guidance_huge", "dit_guidance", "--dit_guidance", "1e308"),
    arg("dit_guidance_exp_fraction", "dit_guidance_exp", "--dit_guidance_exp", "2.5"),
    arg("dit_guidance_exp_huge", "dit_guidance_exp", "--dit_guidance_exp", "1000"),
    arg("motion_score_nan", "motion_score must be a finite", "--motion_score", "nan"),
    arg("seed_negative", "seed must be in", "--seed", "-1"),
    arg("seed_too_large", "seed must be in", "--seed", str(2**40)),
    arg("num_frames_invalid", "num_frames=8 is not supported", "--num_frames", "8"),
    arg("lm_window_zero", "lm_window must be >= 1", "--lm_window", "0"),
    arg("fps_zero", "fps must be >= 1", "--fps", "0"),
    arg("kernel_mosaic_on_cpu", "needs a Hopper GPU", "--dit_attention", "mosaic"),
    arg("kernel_cudnn_on_cpu", "cudnn", "--dit_attention", "cudnn"),
    arg("unexpected_argument", "unexpected arguments", "stray.txt"),
    arg("random_weights_and_checkpoint", "exclude each other", "--random_weights", "--checkpoint", "{shipped}"),
    arg("config_file_missing", "config file not found", "--random_weights", "--config", "{d}/none.py"),
    arg("config_file_broken", "cannot be imported", "--random_weights", "--config", "{d}/broken.py",
        setup=(write("broken.py", "def get_config(:\n"),)),
    gen("prompt_empty", "--prompt", "", expect=Error("--prompt number 1 is empty", rc=2)),
    gen("prompt_whitespace", "--prompt", "ok", "--prompt", " \t ", expect=Error("--prompt number 2 is empty", rc=2)),
    gen("no_prompt", expect=Error("give --prompt or --prompts_file", rc=2)),
    gen("prompts_file_empty", "--prompts_file", "{d}/p.txt", expect=Error("has no prompts", rc=2),
        setup=(write("p.txt", b""),)),
    gen("prompts_file_not_utf8", "--prompts_file", "{d}/p.txt", expect=Error("is not UTF-8 text", rc=2),
        setup=(write("p.txt", b"\xff\xfe a fox\n"),)),
    gen("prompts_file_binary", "--prompts_file", "{d}/p.txt", expect=Error("not UTF-8 text|not a text file", rc=2),
        setup=(write("p.txt", bytes(range(256)) * 4),)),
    gen("prompts_file_missing", "--prompts_file", "{d}/none.txt", expect=Error("prompts file not found", rc=2)),
    codes_case("codes_missing", "--codes file not found", lambda: 0, "--codes", "{d}/none.npy"),
    codes_case("codes_float", "codes must be integers, got dtype float32",
               lambda: np.zeros((1, N), "float32")),
    codes_case("codes_nan", "codes must be integers", lambda: np.full((1, N), float("nan"))),
    codes_case("codes_too_long", r"codes have shape \(1, 33\)", lambda: np.zeros((1, N + 1), int)),
    codes_case("codes_two_rows_one_prompt", r"expected \(1, 32\) for 1 prompt",
               lambda: np.zeros((2, N), int)),
    codes_case("codes_empty", "codes have shape", lambda: np.zeros((0,), int)),
    codes_case("codes_above_codebook", r"codes must lie in \[0, 256\)",
               lambda: np.full((1, N), TINY_CODEBOOK)),
    codes_case("codes_pickled_objects", "not a .npy array file",
               lambda: np.array([{"a": 1}], dtype=object)),
    gen("codes_not_npy", "--prompt", PROMPT, "--codes", "{d}/p.txt", expect=Error("not a .npy array file", rc=2),
        setup=(write("p.txt", "1 2 3\n"),), category="generate-codes"),
    codes_case("codes_for_other_frames", "codes have shape", lambda: np.zeros((1, N), int),
               "--num_frames", "17"),

    # ---- 4/5. convert: early, clear, one line
    convert("checksums_missing", "--checksums file not found", "--checksums", "{d}/none.md5", rc=2),
    convert("checksums_malformed", "not a '<md5>  <path>' line", "--checksums", "{d}/sums.md5",
            setup=(write("sums.md5", "not a checksum line\n"),)),
    convert("checksums_empty", "names none|names no|does not name", "--checksums", "{d}/sums.md5",
            setup=(write("sums.md5", ""),)),
    convert("checksums_binary", "sums.md5", "--checksums", "{d}/sums.md5",
            setup=(write("sums.md5", b"\xff\x00" * 64),)),
    convert("checksum_mismatch", "verification failed", "--checksums", "{d}/sums.md5", lines=3,
            setup=(sums_with_a_wrong_one("sums.md5", "llm/model.safetensors"),)),
    convert("original_config_missing", "--original_config file not found", config=("--original_config",
                                                                                   "{d}/none.json"), rc=2),
    convert("original_config_not_json", "is not valid JSON", config=("--original_config", "{d}/m.json"), rc=2,
            setup=(write("m.json", "{oops"),)),
    convert("original_config_no_config_key", "has no 'config' entry", config=("--original_config", "{d}/m.json"),
            rc=2, setup=(write("m.json", '{"component": "e2e"}'),)),
    convert("original_config_wrong_form", "not of the expected form", config=("--original_config", "{d}/m.json"),
            setup=(write("m.json", '{"config": {"llm": {}}}'),)),
    convert("original_config_and_preset", "not both", "--preset", "tiny", rc=2),
    convert("config_file_missing", "config file not found", config=("--config", "{d}/none.py"), rc=2),
    convert("config_sizes_differ", r"\[lm\]|component\(s\) against the config", config=("--preset", "tiny"),
            lines=400),
    convert("pt_wrong_structure", "expected a dict with key 'state_dict', found list", "--noverify", tree="{d}/case",
            setup=(copy_e2e(), torch_save("case/ckpts/LanDiff/CogVideoX-2b-sat/vae/3d-vae.pt",
                                          lambda torch: [torch.zeros(2)]))),
    convert("pt_not_a_pickle", "3d-vae.pt", "--noverify", tree="{d}/case",
            setup=(copy_e2e(), write("case/ckpts/LanDiff/CogVideoX-2b-sat/vae/3d-vae.pt", os.urandom(4096)))),
    convert("pt_malicious_pickle", "3d-vae.pt", "--noverify", tree="{d}/case", absent=("out", "pwned"),
            setup=(copy_e2e(), malicious_pickle("case/ckpts/LanDiff/CogVideoX-2b-sat/vae/3d-vae.pt", "pwned"))),
    convert("pt_malicious_torch_file", "is refused: not a plain tensor checkpoint", "--noverify", tree="{d}/case",
            absent=("out", "pwned"), setup=(copy_e2e(), malicious_pickle("case/ckpts/LanDiff/CogVideoX-2b-sat/vae/"
                                                                         "3d-vae.pt", "pwned", torch_file=True))),
    convert("pt_truncated", "3d-vae.pt", "--noverify", tree="{d}/case",
            setup=(copy_e2e(), truncate("case/ckpts/LanDiff/CogVideoX-2b-sat/vae/3d-vae.pt"))),
    convert("pt_key_missing", r"problem\(s\) converting 1 component", "--noverify", tree="{d}/case", lines=40,
            setup=(copy_e2e(), edit_torch("case/ckpts/LanDiff/CogVideoX-2b-sat/vae/3d-vae.pt", lambda s: (
                s["state_dict"].pop(sorted(k for k in s["state_dict"] if not k.startswith("loss"))[0]))))),
    convert("shard_missing_noverify", "missing:", "--noverify", tree="{d}/case", lines=3,
            setup=(copy_e2e(), remove("case/ckpts/LanDiff/CogVideoX-2b-sat/t5-v1_1-xxl/"
                                      "model-00002-of-00002.safetensors"))),
    convert("llm_missing", "missing:", tree="{d}/case", lines=3,
            setup=(copy_e2e(), remove("case/ckpts/LanDiff/llm/model.safetensors"))),
    convert("latest_points_nowhere", "missing:|latest", "--noverify", tree="{d}/case", lines=3,
            setup=(copy_e2e(), write("case/ckpts/LanDiff/diffusion/latest", "7\n"))),
    convert("safetensors_header_damaged", "safetensors", "--noverify", tree="{d}/case",
            setup=(copy_e2e(), flip_at("case/ckpts/LanDiff/llm/model.safetensors", 12))),
    convert("safetensors_truncated_noverify", "model.safetensors", "--noverify", tree="{d}/case",
            setup=(copy_e2e(), truncate("case/ckpts/LanDiff/llm/model.safetensors", 0.9))),
    convert("flan_t5_config_not_json", "config.json", tree="{d}/case",
            setup=(copy_e2e(), write("case/flan-t5/config.json", "{oops"))),
    convert("flan_t5_checksum_mismatch", "Flan-T5 verification failed", "--flan_t5_checksums", "{d}/flan.md5",
            lines=3, setup=(write("flan.md5", "0" * 32 + "  ./model.safetensors\n"),)),
    convert("out_exists", "already exists", setup=(write("out/x", "a user's file"),), keep=("out/x",), absent=()),
    convert("out_below_a_file", "is not a directory", out="{d}/file/out", setup=(write("file", "x"),)),
    convert("out_read_only", "not writable", out="{d}/ro/out", setup=(read_only("ro"),)),
    convert("release_missing", "directory not found", tree="{d}/nowhere"),
    convert("unexpected_argument", "unexpected arguments", "extra", rc=2),
    convert("disk_full_before_writing", "not enough space|no space left|file-size limit", "--noverify",
            out="{d}/disk/out", setup=(small_disk("disk", 256),), absent=()),
    Case("two_conversions_racing", "convert", "convert.py",
         ("--release", "{e2e}/ckpts/LanDiff", "--flan_t5", "{e2e}/flan-t5", "--original_config", "{e2e}/meta.json",
          "--out", "{d}/out"), Works(converted_ok("out", marked=True)), race=True, needs_e2e=True, timeout=300),
    Case("sigterm_then_rerun", "convert", "convert.py",
         ("--release", "{e2e}/ckpts/LanDiff", "--flan_t5", "{e2e}/flan-t5", "--original_config", "{e2e}/meta.json",
          "--out", "{d}/out", "--noverify"), Works(converted_ok("out")), first=Interrupt("SIGTERM", r"^\[1/6\]"),
         needs_e2e=True, timeout=300),
    Case("sigkill_then_rerun", "convert", "convert.py",
         ("--release", "{e2e}/ckpts/LanDiff", "--flan_t5", "{e2e}/flan-t5", "--original_config", "{e2e}/meta.json",
          "--out", "{d}/out", "--noverify"), Works(converted_ok("out")), first=Interrupt("SIGKILL", r"^\[2/6\]"),
         needs_e2e=True, timeout=300),
    Case("disk_fills_during_the_write", "convert", "convert.py",
         ("--release", "{e2e}/ckpts/LanDiff", "--flan_t5", "{e2e}/flan-t5", "--original_config", "{e2e}/meta.json",
          "--out", "{d}/disk/out", "--noverify"), Error("no space left on device|file-size limit", rc=1),
         (small_disk("disk", 64 * 1024, leave_kib=16),), first=Interrupt("fill_disk", r"^\[1/6\]"), needs_e2e=True,
         timeout=300),

    # ---- other tools: a few bad inputs each
    tool("parity.py", "directory_missing", "no such directory", "{d}/none", rc=2),
    tool("parity.py", "no_cases", "no fixture cases", "{d}/empty", rc=2, setup=(write("empty/readme", "x"),)),
    tool("parity.py", "meta_not_json", "is not valid JSON", "{d}/c", rc=2, setup=(write("c/case/meta.json", "{"),)),
    tool("parity.py", "io_npz_missing", "io.npz", "{d}/c", rc=2,
         setup=(write("c/case/meta.json", '{"component": "t5", "case": "x"}'),)),
    tool("parity.py", "io_npz_not_a_zip", "io.npz", "{d}/c", rc=2,
         setup=(write("c/case/meta.json", '{"component": "t5", "case": "x"}'), write("c/case/io.npz", "not a zip"))),
    tool("parity.py", "meta_a_list", "meta.json", "{d}/c", rc=2,
         setup=(write("c/case/meta.json", "[]"), save_npy("c/case/io.npz", lambda: 0))),
    tool("train.py", "config_missing", "config file not found", "--config", "{d}/none.py", rc=2),
    tool("train.py", "config_not_given", "config", rc=None),
    tool("train.py", "override_unknown_field", "has no field 'nonsense'", "--config", "{repo}/configs/lm_tiny.py",
         "nonsense=1", rc=2),
    tool("train.py", "override_not_key_value", "not of the form key=value", "--config", "{repo}/configs/lm_tiny.py",
         "steps", rc=2),
    tool("train.py", "override_wrong_type", "steps", "--config", "{repo}/configs/lm_tiny.py", "steps=ten", rc=2),
    tool("train.py", "data_path_missing", "data.path", "--config", "{repo}/configs/lm_tiny.py", "data.path={d}/none",
         rc=2),
    tool("train.py", "data_path_not_a_dataset", "dataset", "--config", "{repo}/configs/lm_tiny.py",
         "data.path={d}/data", "--workdir", "{d}/run", setup=(write("data/readme", "x"),), absent=("run",)),
    tool("prepare_data.py", "stages_unknown", "--stages must be", "--source", "synthetic_lm", "--stages", "lm,fox",
         "--num_examples", "4", "--out", "{d}/data", rc=2, absent=("data",)),
    tool("prepare_data.py", "num_examples_zero", "--num_examples must be >= 1", "--source", "synthetic_lm",
         "--stages", "lm", "--num_examples", "0", "--out", "{d}/data", rc=2, absent=("data",)),
    tool("prepare_data.py", "synthetic_lm_other_stage", "makes 'lm' examples only", "--source", "synthetic_lm",
         "--stages", "tokenizer", "--num_examples", "4", "--out", "{d}/data", rc=2, absent=("data",)),
    tool("prepare_data.py", "out_is_a_file", "--out .*data is a file, not a directory", "--source", "synthetic_lm",
         "--stages", "lm", "--num_examples", "4", "--out", "{d}/data", rc=2, setup=(write("data", "x"),),
         keep=("data",)),
    tool("prepare_data.py", "out_below_a_file", "--out .*file is a file, not a directory", "--source",
         "synthetic_videos", "--num_examples", "2", "--random_weights", "--stages", "tokenizer", "--out",
         "{d}/file/data", rc=2, setup=(write("file", "x"),), keep=("file",)),
    tool("prepare_data.py", "list_is_a_directory", "--list .*a directory, not a file", "--source", "videos", "--list",
         "{d}/lists", "--random_weights", "--stages", "tokenizer", "--out", "{d}/data", rc=2,
         setup=(write("lists/clips.jsonl", "{}"),), absent=("data",)),
    tool("prepare_data.py", "list_missing", "--list", "--source", "videos", "--list", "{d}/none.jsonl",
         "--random_weights", "--stages", "tokenizer", "--out", "{d}/data", rc=2, absent=("data",)),
    tool("prepare_data.py", "list_malformed", "clips.jsonl", "--source", "videos", "--list", "{d}/clips.jsonl",
         "--random_weights", "--stages", "tokenizer", "--out", "{d}/data",
         setup=(write("clips.jsonl", "{not json\n"),), absent=("data",)),
    tool("prepare_data.py", "checkpoint_missing", "--checkpoint", "--source", "synthetic_videos", "--num_examples",
         "2", "--checkpoint", "{d}/none", "--stages", "tokenizer", "--out", "{d}/data", rc=2, absent=("data",)),
    tool("evaluate.py", "subset_zero", "--subset must be in", "--ground_truth", "--subset", "0", "--output_dir",
         "{d}/eval", rc=2, absent=("eval",)),
    tool("evaluate.py", "seeds_zero", "--seeds", "--ground_truth", "--seeds", "0", "--output_dir", "{d}/eval", rc=2,
         absent=("eval",)),
    tool("evaluate.py", "prompts_file_binary", "prompts", "--ground_truth", "--prompts_file", "{d}/p.txt",
         "--output_dir", "{d}/eval", rc=2, setup=(write("p.txt", bytes(range(256))),), absent=("eval",)),
    tool("evaluate.py", "prompt_outside_the_grammar", "p.txt:1", "--ground_truth", "--prompts_file", "{d}/p.txt",
         "--output_dir", "{d}/eval", rc=2, setup=(write("p.txt", "a fox in the snow\n"),), absent=("eval",)),
    tool("evaluate.py", "steps_zero", r"steps must be in \[2, 999\]", "--steps", "0", "--subset", "1",
         "--output_dir", "{d}/eval", rc=2, absent=("eval",)),
    tool("evaluate.py", "seed_negative", "seed must be in", "--seed", "-1", "--subset", "1", "--output_dir",
         "{d}/eval", rc=2, absent=("eval",)),
    tool("evaluate.py", "output_dir_is_a_file", "--output_dir .*eval is a file, not a directory", "--ground_truth",
         "--subset", "1", "--output_dir", "{d}/eval", rc=2, setup=(write("eval", "x"),), keep=("eval",)),
    tool("evaluate.py", "output_dir_below_a_file", "--output_dir .*file is a file, not a directory", "--subset", "1",
         "--output_dir", "{d}/file/eval", rc=2, setup=(write("file", "x"),), keep=("file",)),
    tool("evaluate.py", "videos_dir_is_a_file", "videos is a file, not a directory", "--ground_truth", "--subset",
         "1", "--output_dir", "{d}/eval", rc=2, setup=(write("eval/videos", "x"),), keep=("eval/videos",)),
    tool("evaluate.py", "results_is_a_directory", "results.json is a directory, not a file", "--ground_truth",
         "--subset", "1", "--output_dir", "{d}/eval", rc=2, setup=(write("eval/results.json/x", "x"),),
         absent=("eval/videos",)),
    tool("reconstruct.py", "no_video", "give one video file", "--random_weights", rc=2),
    tool("reconstruct.py", "video_missing", "video not found", "{d}/none.mp4", "--random_weights", rc=2),
    tool("reconstruct.py", "video_not_a_video", "clip.mp4", "{d}/clip.mp4", "--random_weights", rc=2,
         setup=(write("clip.mp4", os.urandom(2048)),), absent=("clip_reconstruction.mp4",)),
    tool("reconstruct.py", "caption_empty", "--caption is empty", "{d}/clip.mp4", "--random_weights", "--caption",
         "  ", rc=2, setup=(write("clip.mp4", "x"),)),
    tool("reconstruct.py", "steps_zero", r"steps must be in \[2, 999\]", "{d}/clip.mp4", "--random_weights",
         "--steps", "0", rc=2, setup=(write("clip.mp4", "x"),)),
    tool("export.py", "nothing_to_export", "give --config", rc=2),
    tool("export.py", "mesh_malformed", "--mesh must be", "--config", "{repo}/configs/tiny.py", "--mesh", "8,x", rc=2),
    tool("export.py", "platform_unknown", "platform", "--config", "{repo}/configs/tiny.py", "--platform", "gpu9",
         rc=2),
    tool("export.py", "config_missing", "config file not found", "--config", "{d}/none.py"),
    tool("export.py", "train_config_is_a_system_config", "TrainConfig", "--train_config", "{repo}/configs/tiny.py"),
    tool("plot_metrics.py", "no_runs", "give one or more", rc=None),
    tool("plot_metrics.py", "metrics_missing", "no metrics file", "{d}/run", "--out", "{d}/loss.png",
         absent=("loss.png",)),
    tool("plot_metrics.py", "metrics_empty", "holds no metrics", "{d}/m.jsonl", "--out", "{d}/loss.png",
         setup=(write("m.jsonl", ""),), absent=("loss.png",)),
    tool("plot_metrics.py", "metrics_not_json", "m.jsonl:2", "{d}/m.jsonl", "--out", "{d}/loss.png",
         setup=(write("m.jsonl", '{"step": 1, "loss": 2.0}\n{"step": 2, "loss"\n'),), absent=("loss.png",)),
    tool("plot_metrics.py", "metrics_without_step", "m.jsonl:1", "{d}/m.jsonl", "--out", "{d}/loss.png",
         setup=(write("m.jsonl", '{"loss": 2.0}\n'),), absent=("loss.png",)),
    tool("plot_metrics.py", "out_below_a_file", "is not a directory", "{d}/m.jsonl", "--out", "{d}/file/loss.png",
         setup=(write("m.jsonl", '{"step": 1, "loss": 2.0, "lr": 0.1}\n'), write("file", "x")), keep=("file",)),
    Case("writes_a_plot_in_a_new_directory", "plot_metrics", "plot_metrics.py",
         ("{d}/m.jsonl", "--out", "{d}/new/loss.png"), Works(plot_written),
         (write("m.jsonl", '{"step": 1, "loss": 2.0, "lr": 0.1}\n{"step": 2, "loss": 1.5}\n'),), keep=("m.jsonl",)),
    tool("train_tiny.py", "clips_zero", "--clips must be >= 1", "--workdir", "{d}/w", "--clips", "0",
         absent=("w",)),
    tool("train_tiny.py", "workdir_is_a_file", "workdir", "--workdir", "{d}/w", "--quick", setup=(write("w", "x"),),
         keep=("w",)),
    tool("train_tiny.py", "reuse_not_a_checkpoint", "--reuse", "--workdir", "{d}/w", "--reuse", "{d}/none"),
    tool("train_tiny.py", "unexpected_argument", "unexpected arguments", "--workdir", "{d}/w", "extra",
         absent=("w",)),
]


# ---- running a case ---------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    stopped: bool = False  # stopped by the sweep when it began to load weights (see run_once)


# conditions an Interrupt can wait for: the tool's ffmpeg is writing the video
WAIT_FOR = {"ffmpeg": lambda ctx: bool(processes_mentioning(str(ctx.d / "out"), "ffmpeg"))}


def processes_mentioning(text: str, program: str | None = None) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline and (program is None or program.encode() in cmdline.split(b"\0")[0]):
                pids.append(int(proc.name))
    return pids


def environment(ctx: Context) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    xla = env.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in xla:  # compile ~40 % faster (as tests/conftest.py)
        env["XLA_FLAGS"] = f"{xla} --xla_backend_optimization_level=0".strip()
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(ctx.root / "xla-cache"))
    env.update(ctx.case.env)
    env.update(ctx.env)
    return env


def command(ctx: Context) -> list[str]:
    values = {"d": str(ctx.d), "repo": str(REPO), "e2e": str(ctx.fixtures / E2E), "shipped": str(SHIPPED)}
    return [sys.executable, str(REPO / "tools" / ctx.case.tool), *(a.format(**values) for a in ctx.case.args),
            *ctx.extra_args]


def start(ctx: Context) -> subprocess.Popen:
    limit = ctx.limit_file_size

    def limits():  # no tmpfs (not root): writes beyond this size fail (EFBIG) instead of a full disk
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen(command(ctx), env=environment(ctx), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", preexec_fn=limits if limit else None,
                            start_new_session=True)


def finish(proc: subprocess.Popen, began: float, timeout: float) -> Outcome:
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - began)))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Outcome(None, out, err, time.monotonic() - began)
    return Outcome(proc.returncode, out, err, time.monotonic() - began)


def run_once(ctx: Context) -> Outcome:
    """A case's command to its end; one refused before any weight is read is stopped as soon as it
    starts loading them (it took the bad input: LATE or worse)."""
    expect = ctx.case.expect
    early = isinstance(expect, Error) and expect.early
    return execute(ctx, LOADING if early else None, "stop")


LOADING = r"^loading "  # what the tools print before they read weights


def execute(ctx: Context, when: str | None, action: str) -> Outcome:
    """Run the case's command; when `when` shows (a regex on a stdout line, or the name of a
    WAIT_FOR condition), act: 'stop' (SIGKILL, noted in the outcome), a signal's name, or
    'fill_disk' (the case's tmpfs fills up); then let the run end."""
    began = time.monotonic()
    proc = start(ctx)
    lines: list[str] = []
    seen = threading.Event()
    condition = WAIT_FOR.get(when)

    def read():
        for line in proc.stdout:
            lines.append(line)
            if when is not None and condition is None and re.search(when, line):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    acted = when is None
    while not acted and proc.poll() is None and time.monotonic() - began < ctx.case.timeout:
        if seen.is_set() or (condition is not None and condition(ctx)):
            if action == "fill_disk":
                if ctx.fill is not None:  # (with a file-size limit instead, the writes fail anyway)
                    fill_disk(*ctx.fill)
            else:
                os.killpg(proc.pid, signal.SIGKILL) if action == "stop" else proc.send_signal(getattr(signal, action))
            acted = True
            break
        time.sleep(0.02)
    try:
        proc.wait(timeout=max(1.0, ctx.case.timeout - (time.monotonic() - began)))
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        returncode = None
    reader.join(timeout=10)
    outcome = Outcome(returncode, "".join(lines), proc.stderr.read(), time.monotonic() - began)
    if action == "stop":
        outcome.stopped = acted and when is not None
    elif not acted:
        outcome.stderr += f"\n[sweep] the moment to act ({when}) never came"
    return outcome


def judge_stopped(ctx: Context, outcome: Outcome, before: dict[str, str | None], signum: int) -> tuple[str, str]:
    """A run stopped by `signum`: the signal's exit status, the kept files unchanged, no temporary,
    no child process left."""
    if outcome.rc is None:
        return "HANG", f"no exit after {signal.Signals(signum).name}"
    changed = [rel for rel, digest in before.items() if digest_of(ctx.d / rel) != digest]
    if changed:
        return "LOSS", f"changed or removed: {', '.join(changed)}"
    if "[sweep] the moment" in outcome.stderr:
        return "WRONG", outcome.stderr.strip().splitlines()[-1]
    expected = 128 + signum if signum == signal.SIGTERM else -signum
    if outcome.rc != expected:
        return "WRONG", f"exit {outcome.rc} after {signal.Signals(signum).name}, not {expected}"
    if TRACEBACK in outcome.stderr:
        return "TRACEBACK", "a traceback on SIGTERM"
    if signum == signal.SIGTERM:
        temporaries = temporaries_below(ctx.d)
        if temporaries:
            return "WRONG", f"temporaries left after SIGTERM: {temporaries[:3]}"
        time.sleep(0.2)
        if processes_mentioning(str(ctx.d), "ffmpeg"):
            return "WRONG", "ffmpeg outlived the tool"
    return "OK", f"exit {outcome.rc}"


def judge(ctx: Context, outcome: Outcome, before: dict[str, str | None]) -> tuple[str, str]:
    case, d = ctx.case, ctx.d
    if outcome.rc is None:
        return "HANG", f"no exit within {case.timeout:.0f} s"
    if outcome.stopped:
        return "LATE", "took the bad input and began to load the weights (stopped there)"
    changed = [rel for rel, digest in before.items() if digest_of(d / rel) != digest]
    if changed:
        return "LOSS", f"changed or removed: {', '.join(changed)}"
    partial = [rel for rel in case.absent if (d / rel).exists() and rel.endswith((".mp4", ".npy", ".png"))]
    if partial:
        return "LOSS", f"a file at a final path: {', '.join(partial)}"
    both = outcome.stdout + outcome.stderr
    if TRACEBACK in both:
        last = [line for line in outcome.stderr.strip().splitlines() if line.strip()][-1:] or ["?"]
        return "TRACEBACK", last[0][:200]
    expect = case.expect
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if isinstance(expect, Error):
        if outcome.rc == 0:
            return "SILENT", "exit 0" + (f"; stdout ends {outcome.stdout.strip().splitlines()[-1][:120]!r}"
                                         if outcome.stdout.strip() else "")
        if expect.early and re.search(LOADING, outcome.stdout, re.M):
            return "LATE", f"refused only after loading the weights: {lines[:1]}"
        if not lines or not re.search(expect.text, lines[0]):
            return "WRONG", f"exit {outcome.rc}, first stderr line {lines[:1]} lacks /{expect.text}/"
        if len(lines) > expect.lines:
            return "WRONG", f"{len(lines)} lines on stderr (at most {expect.lines}): {lines[1][:120]!r}"
        if expect.rc is not None and outcome.rc != expect.rc:
            return "WRONG", f"exit {outcome.rc}, expected {expect.rc}: {lines[0][:150]}"
        detail = lines[0][:150]
    else:
        if outcome.rc != 0:
            return "WRONG", f"exit {outcome.rc}: {lines[:1]}"
        noise = NOISE.search(outcome.stderr)
        if noise:
            return "WRONG", f"noisy: {noise.group(0)!r} on stderr"
        verdict = expect.check(d, outcome.stdout) if expect.check else None
        if verdict:
            return verdict
        detail = "worked"
    left = [rel for rel in case.absent if (d / rel).exists()]
    if left:
        return "WRONG", f"left behind: {', '.join(left)}"
    temporaries = temporaries_below(d)
    if temporaries:
        return "WRONG", f"temporaries left: {temporaries[:3]}"
    return "OK", detail


def temporaries_below(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if re.search(r"\.tmp-|\.lock$", p.name))


def digest_of(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_case(case: Case, root: Path, fixtures: Path) -> tuple[str, str, float]:
    ctx = Context(case, root, fixtures)
    shutil.rmtree(ctx.d, ignore_errors=True)
    ctx.d.mkdir(parents=True)
    began = time.monotonic()
    log: list[str] = []

    def record(outcome: Outcome, what: str) -> None:
        log.append(f"[{what}: exit {outcome.rc}, {outcome.seconds:.1f} s]\n{outcome.stdout}\n"
                   f"[stderr]\n{outcome.stderr}")

    try:
        for step in case.setup:
            step(ctx)
        log.append(f"$ {' '.join(command(ctx))}")
        if ctx.fill is not None and (case.first is None or case.first.action != "fill_disk"):
            fill_disk(*ctx.fill)
        before = {rel: digest_of(ctx.d / rel) for rel in case.keep}
        if case.first is not None:
            outcome = execute(ctx, case.first.when, case.first.action)
            record(outcome, f"first run, {case.first.action} at /{case.first.when}/")
            if case.first.action == "fill_disk":
                return finish_case(ctx, log, *judge(ctx, outcome, before), began)
            signum = getattr(signal, case.first.action)
            stopped = judge_stopped(ctx, outcome, before, signum)
            if isinstance(case.expect, Stopped) or stopped[0] != "OK":
                return finish_case(ctx, log, *stopped, began)
        outcome = run_race(ctx) if case.race else run_once(ctx)
        record(outcome, "run")
        return finish_case(ctx, log, *judge(ctx, outcome, before), began)
    except Exception as e:  # noqa: BLE001 (the sweep's own failure to set a case up)
        import traceback

        log.append(traceback.format_exc())
        return finish_case(ctx, log, "WRONG", f"[sweep] setup failed: {type(e).__name__}: {e}", began)
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()


def run_race(ctx: Context) -> Outcome:
    """Two copies at once: one must convert, the other refuse in one line (the outcome judged is
    the successful one's; the loser's refusal is checked here)."""
    began = time.monotonic()
    procs = [start(ctx) for _ in range(2)]
    outcomes = [finish(p, began, ctx.case.timeout) for p in procs]
    winners = [o for o in outcomes if o.rc == 0]
    losers = [o for o in outcomes if o.rc != 0]
    if len(winners) != 1:
        rcs = [o.rc for o in outcomes]
        return Outcome(1 if rcs != [0, 0] else 0, "", f"[sweep] racing conversions exited {rcs}\n"
                       + "\n".join(o.stderr for o in outcomes), time.monotonic() - began)
    loser_lines = [line for line in losers[0].stderr.splitlines() if line.strip()]
    if len(loser_lines) != 1 or not re.search(r"another process|already exists", loser_lines[0]):
        winners[0].stderr += f"\n[sweep] the other conversion's refusal is not one line: {loser_lines[:3]}"
        winners[0].rc = 1
    return winners[0]


def finish_case(ctx: Context, log: list[str], verdict: str, detail: str, began: float) -> tuple[str, str, float]:
    seconds = time.monotonic() - began
    log.append(f"[verdict] {verdict}: {detail}")
    logs = ctx.root / "logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{ctx.case.category}.{ctx.case.name}.txt").write_text("\n".join(log))
    return verdict, detail, seconds


def unmount_below(root: Path) -> None:
    """tmpfs mounts a killed earlier sweep left under `root`."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    for line in mounts:
        point = line.split()[1] if len(line.split()) > 1 else ""
        if point.startswith(str(root.resolve()) + "/"):
            subprocess.run(["umount", "-l", point], check=False)


def table(results: dict[Case, tuple[str, str, float]]) -> str:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case, (verdict, _, _) in results.items():
        counts[case.category][verdict] += 1
    used = [v for v in VERDICTS if any(c[v] for c in counts.values())]
    width = max(len(c) for c in counts) + 2
    lines = [f"{'category':<{width}}" + "".join(f"{v:>10}" for v in used) + f"{'total':>8}"]
    for category, c in counts.items():
        lines.append(f"{category:<{width}}" + "".join(f"{c[v]:>10}" for v in used) + f"{sum(c.values()):>8}")
    total = collections.Counter(v for v, _, _ in results.values())
    lines.append(f"{'all':<{width}}" + "".join(f"{total[v]:>10}" for v in used) + f"{len(results):>8}")
    summary = ", ".join(f"{total[v]} {v}" for v in VERDICTS if total[v])
    return "\n".join(lines) + f"\n{len(results)} cases: {summary}"


def select(cases: list[Case], pattern: str | None) -> list[Case]:
    if pattern is None:
        return cases
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise cli.UsageError(f"--only {pattern!r} is not a regular expression ({e})")
    chosen = [c for c in cases if regex.search(c.label)]
    if not chosen:
        raise cli.UsageError(f"--only {pattern!r} matches no case")
    return chosen


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
    labels = collections.Counter(c.label for c in CASES)
    assert all(n == 1 for n in labels.values()), [n for n, k in labels.items() if k > 1]
    cases = select(CASES, FLAGS.only)
    if FLAGS.list:
        for case in cases:
            print(case.label)
        return 0
    if FLAGS.jobs < 1:
        raise cli.UsageError(f"--jobs must be >= 1, got {FLAGS.jobs}")
    cli.quiet_libraries(False)  # the setup's own checkpoint writes
    fixtures = Path(FLAGS.fixtures or os.environ.get("LANDIFF_FIXTURES") or REPO.parent / "shared" / "fixtures")
    if any(c.needs_e2e for c in cases) and not (fixtures / E2E / "meta.json").is_file():
        raise cli.UsageError(f"the convert cases need the e2e fixture {fixtures / E2E} (--fixtures DIR)")
    root = Path(FLAGS.out).absolute()
    unmount_below(root)
    shutil.rmtree(root / "cases", ignore_errors=True)
    shutil.rmtree(root / "logs", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    print(f"{len(cases)} cases, {FLAGS.jobs} at a time; logs in {root / 'logs'}", flush=True)
    results: dict[Case, tuple[str, str, float]] = {}
    began = time.monotonic()
    # the slow cases first, so that the quick ones fill the other slots meanwhile
    order = sorted(cases, key=lambda c: -c.timeout)
    with ThreadPoolExecutor(FLAGS.jobs) as pool:
        futures = {pool.submit(run_case, case, root, fixtures): case for case in order}
        for future in futures:
            case = futures[future]
            verdict, detail, seconds = results[case] = future.result()
            print(f"{verdict:<10}{case.label:<52}{seconds:6.1f} s  {detail}", flush=True)
    print(f"\n{table({c: results[c] for c in cases})}  ({time.monotonic() - began:.0f} s)")
    return 0 if all(v == "OK" for v, _, _ in results.values()) else 1


if __name__ == "__main__":
    cli.run(main)
