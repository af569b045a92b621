"""Convert a released `ckpts/LanDiff` tree (+ a local Flan-T5-XXL directory) into one converted
checkpoint directory that `tools/generate.py --checkpoint` loads.

  python tools/convert.py --release ckpts/LanDiff --flan_t5 /path/to/flan-t5-xxl --out ckpts/landiff-jax
  python tools/convert.py --config configs/full.py ...        (--preset full is the shorthand)

The original downloads Flan-T5-XXL from the hub at run time; it is not part of the release, so give
its local Hugging Face directory. md5 sums are checked first (the tree's own CHECKSUM.md5 if it has
one, else the published ones shipped with the package); --noverify skips that.
"""

import json
import sys
from pathlib import Path

from absl import app, flags

flags.DEFINE_string("release", None, "the released ckpts/LanDiff directory", required=True)
flags.DEFINE_string("flan_t5", None, "local Hugging Face Flan-T5-XXL directory (config.json, spiece.model, "
                    "safetensors)", required=True)
flags.DEFINE_string("out", None, "output directory (must not exist)", required=True)
flags.DEFINE_string("config", None, "system config file (configs/*.py) describing the release's model sizes")
flags.DEFINE_enum("preset", None, ["full", "tiny"], "shorthand for --config configs/<preset>.py (default: full)")
flags.DEFINE_string("original_config", None, "instead of --config: a meta.json whose 'config' holds the "
                    "original's configuration (as the parity fixtures carry)")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "dtype the parameters are stored in")
flags.DEFINE_bool("verify", True, "check md5 sums before converting")
flags.DEFINE_string("checksums", None, "md5 list to verify against (default: <release>/CHECKSUM.md5, else the "
                    "published sums)")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.config_file import ConfigError
    from landiff_jax.convert.io import CheckpointError
    from landiff_jax.release import convert_release

    try:
        if FLAGS.original_config:
            if FLAGS.config or FLAGS.preset:
                raise ConfigError("give --original_config or --config/--preset, not both")
            config = json.loads(Path(FLAGS.original_config).read_text())["config"]
        else:
            config = LanDiffConfig.select(FLAGS.config, FLAGS.preset, default="full")
        convert_release(Path(FLAGS.release), Path(FLAGS.flan_t5), Path(FLAGS.out), config, dtype=FLAGS.dtype,
                        verify=FLAGS.verify, checksum_file=Path(FLAGS.checksums) if FLAGS.checksums else None)
    except (CheckpointError, ConfigError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
