"""Convert a released `ckpts/LanDiff` tree (+ a local Flan-T5-XXL directory) into one converted
checkpoint directory that `tools/generate.py --checkpoint` loads.

  python tools/convert.py --release ckpts/LanDiff --flan_t5 /path/to/flan-t5-xxl --out ckpts/landiff-jax
  python tools/convert.py --config configs/full.py ...        (--preset full is the shorthand)

The original downloads Flan-T5-XXL from the hub at run time; it is not part of the release, so give
its local Hugging Face directory. md5 sums are checked first (the tree's own CHECKSUM.md5 if it has
one, else the published ones shipped with the package; a differing file is reported), and the
safetensors files against the sizes their headers declare; --noverify skips that (every file must
still be present). One error line and a non-zero exit for a bad tree, a bad config, a full disk or
another conversion writing the same --out; the storage libraries' logs only with --verbose.
"""

import json
from pathlib import Path

from absl import flags

from landiff_jax import cli

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
flags.DEFINE_bool("compress", False, "store the parameters zstd-compressed: about 22 % smaller on disk, "
                  "slower to load (restoring is CPU-bound)")
flags.DEFINE_string("checksums", None, "md5 list to verify against (default: <release>/CHECKSUM.md5, else the "
                    "published sums)")
flags.DEFINE_string("flan_t5_checksums", None, "md5 list ('<md5>  ./<file>' lines, as md5sum writes) of the "
                    "Flan-T5 directory's files (no published list exists; without it only sizes are checked)")
flags.DEFINE_bool("verbose", False, "show the storage libraries' INFO logs (orbax, tensorstore)")
FLAGS = flags.FLAGS


def original_config(path: str) -> dict:
    """meta.json's 'config' (the original's configuration)."""
    file = Path(path)
    if not file.is_file():
        raise cli.UsageError(f"--original_config file not found: {file}")
    try:
        config = json.loads(file.read_text())["config"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise cli.UsageError(f"--original_config {file} is not valid JSON ({e})")
    except (KeyError, TypeError):
        raise cli.UsageError(f"--original_config {file} has no 'config' entry (the original's configuration)")
    if not isinstance(config, dict):
        raise cli.UsageError(f"--original_config {file}: 'config' must be a dict")
    return config


def optional_file(flag: str) -> Path | None:
    value = FLAGS[flag].value
    if value is None:
        return None
    if not Path(value).is_file():
        raise cli.UsageError(f"--{flag} file not found: {value}")
    return Path(value)


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.quiet_libraries(FLAGS.verbose)
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.config_file import ConfigError
    from landiff_jax.release import convert_release

    checksums, flan_t5_checksums = optional_file("checksums"), optional_file("flan_t5_checksums")
    if FLAGS.original_config:
        if FLAGS.config or FLAGS.preset:
            raise cli.UsageError("give --original_config or --config/--preset, not both")
        config = original_config(FLAGS.original_config)
    else:
        try:
            config = LanDiffConfig.select(FLAGS.config, FLAGS.preset, default="full")
        except ConfigError as e:
            raise cli.UsageError(str(e))
    convert_release(Path(FLAGS.release), Path(FLAGS.flan_t5), Path(FLAGS.out), config, dtype=FLAGS.dtype,
                    verify=FLAGS.verify, checksum_file=checksums, flan_t5_checksums=flan_t5_checksums,
                    compress=FLAGS.compress,
                    progress=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    cli.run(main)
