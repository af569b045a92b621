"""Restore rate of a converted checkpoint: the parameters generation reads, straight into one
device's placement and the compute dtype, as `LanDiff.from_checkpoint` restores them: one
component after another (`checkpoint.load_component` each) and all at once
(`checkpoint.load_components`, what `from_checkpoint` does). GB/s of the weights restored
(`pipeline.weight_bytes`); one JSON line per way and round.

  python -m tools.bench.restore --checkpoint /tmp/landiff-random-full --dtype bfloat16

The first round may read from disk, the later ones from the OS page cache (as a warm
`tools/generate.py` does): compare the later rounds. The checksums are not checked (--verify
none, as generate restores after `checkpoint.verify`).
"""

import time

import jax
from absl import flags

from landiff_jax import checkpoint, cli
from landiff_jax.pipeline import COMPONENTS, LanDiff, abstract_params, weight_bytes
from tools.bench.common import emit

flags.DEFINE_string("checkpoint", None, "converted checkpoint directory", required=True)
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "compute dtype (the restored arrays')")
flags.DEFINE_integer("rounds", 2, "rounds of (one at a time, all at once)")
flags.DEFINE_enum("verify", "none", list(checkpoint.VERIFY_LEVELS), "checksums checked by each restore")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_libraries(False)  # (orbax's INFO lines per restore)
    pipe = LanDiff(checkpoint.load_config(FLAGS.checkpoint, FLAGS.dtype), {}, {})  # (the placement only)
    requests = {name: dict(abstract=tree, verify=FLAGS.verify, shardings=pipe.shardings[name],
                           dtype=COMPONENTS[name].config(pipe.cfg).param_dtype)
                for name, tree in abstract_params(pipe.cfg).items()}
    ways = {"one_at_a_time": lambda: {name: checkpoint.load_component(FLAGS.checkpoint, name, **kwargs)
                                      for name, kwargs in requests.items()},
            "all_at_once": lambda: checkpoint.load_components(FLAGS.checkpoint, requests)}
    size = weight_bytes(pipe.cfg) / 1e9
    for round_ in range(FLAGS.rounds):
        for way, restore in ways.items():
            start = time.perf_counter()
            jax.block_until_ready(restore())  # (freed before the next)
            seconds = time.perf_counter() - start
            emit({"stage": "restore", "way": way, "round": round_, "gb": round(size, 3), "seconds": round(seconds, 2),
                  "gb_per_s": round(size / seconds, 3), "components": len(requests)})


if __name__ == "__main__":
    cli.run(main)
