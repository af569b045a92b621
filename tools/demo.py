"""The web demo: a Gradio page that generates a video from a prompt (pip install -e '.[demo]').

  python tools/demo.py                                   # the shipped checkpoints/tiny, on a CPU
  python tools/demo.py --checkpoint ckpts/landiff-jax --port 7860   # a converted release, on a GPU
  python tools/demo.py --preset tiny --random_weights   # no files: RANDOM weights

The model is chosen as tools/generate.py chooses it (`cli.choose_model`): --checkpoint, else the
shipped tiny checkpoint, else RANDOM tiny weights. It is loaded and compiled once (one warm-up
generation with the form's defaults) before the page is served; requests queue and run one at a
time. Other frame or step counts than the defaults compile once more on their first request.
Videos are written to a temporary folder removed at exit (and served from Gradio's cache).
"""

import socket
import tempfile

from absl import flags

from landiff_jax import cli, video_io

cli.define_model_flags()
flags.DEFINE_string("host", "127.0.0.1", "address the page is served on (0.0.0.0: every interface)")
flags.DEFINE_integer("port", 7860, "port the page is served on")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype (default: bfloat16 on GPU, float32 on CPU)")
flags.DEFINE_enum("verify_checkpoint", "cheap", ["none", "cheap", "full"],
                  "checksums of the converted checkpoint (see tools/generate.py --help)")
flags.DEFINE_bool("verbose", False, "show the storage libraries' INFO logs (orbax, tensorstore)")
FLAGS = flags.FLAGS


def check_address(host: str, port: int) -> None:
    """The page's address can be served (checked before the model loads)."""
    if not 0 < port < 65536:
        raise cli.UsageError(f"--port must be in [1, 65535], got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            s.bind((host, port))
    except OSError as e:
        raise cli.UsageError(f"cannot serve on {host}:{port}: {e.strerror or e}")


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
    check_address(FLAGS.host, FLAGS.port)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise cli.UsageError("the demo needs Gradio: pip install -e '.[demo]'")
    cli.quiet_libraries(FLAGS.verbose)
    video_io.ffmpeg_exe()  # the demo serves mp4s
    choice = cli.choose_model(FLAGS.checkpoint, FLAGS.config, FLAGS.preset, FLAGS.random_weights)
    from landiff_jax.demo import Demo, build_app
    from landiff_jax.progress import Display

    if choice.warning:
        print(f"WARNING: {choice.warning}")
    # random weights drawn from generate.py's default seed: the same weights as its default run
    pipe = cli.load_model(choice, cli.compute_dtype(FLAGS.dtype), seed=42, verify=FLAGS.verify_checkpoint)
    with tempfile.TemporaryDirectory(prefix="landiff-demo-") as out_dir:
        demo = Demo(pipe, out_dir)
        print("warming up (one generation with the form's defaults)", flush=True)
        demo.warm_up(Display())
        note = f"**{choice.warning}**" if choice.warning else f"Model: `{choice.source}`"
        print(f"serving http://{FLAGS.host}:{FLAGS.port} (Ctrl-C stops)", flush=True)
        build_app(demo, note=note).launch(server_name=FLAGS.host, server_port=FLAGS.port, quiet=True)
    return 0


if __name__ == "__main__":
    cli.run(main, compiles=True)
