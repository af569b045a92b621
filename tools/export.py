"""Cross-lower the system's compiled jobs for another backend with `jax.export`, from abstract
shapes (no weight is allocated), on any machine (a CPU-only install included).

  python tools/export.py --platform tpu --config configs/full.py \
      --train_config configs/lm_2b.py --train_config configs/diffusion_control.py --mesh 8,8,1
  python tools/export.py --platform tpu,cuda --config configs/tiny.py --train_config configs/lm_tiny.py

Generation jobs of --config (one device, the kernels `runtime` picks on the platform: one TPU,
one H100, one CPU): lm_sample, semantic_feature, dit_sample, vae_decode. Train steps of each
--train_config under an abstract mesh of --mesh = data,fsdp,tensor devices with the trainer's
shardings. Prints per job the StableHLO size and op count, its largest tensor, the per-device
bytes of arguments and outputs (train steps: the state's parts) and, with --compile for this
machine's own platform, XLA's compiled memory analysis. A kernel that cannot be lowered for the
platform from this install is named (FALLBACK) and XLA attention lowered instead.
--output_dir keeps each `Exported` (serialized: `jax.export.deserialize` reads it back) as
<output_dir>/<platform>/<job>.jax_exported.
"""

from pathlib import Path

from absl import flags

from landiff_jax import cli

flags.DEFINE_list("platform", ["tpu"], "target platform(s) among tpu, cuda, cpu (comma-separated)")
flags.DEFINE_string("config", None, "system config configs/<name>.py (a LanDiffConfig): the generation jobs")
flags.DEFINE_multi_string("train_config", [], "training config configs/<name>.py (a TrainConfig; repeat): its "
                          "train step under --mesh")
flags.DEFINE_list("mesh", ["8", "8", "1"], "abstract mesh of the train steps: data,fsdp[,tensor] devices")
flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "parameter and compute dtype of the generation jobs")
flags.DEFINE_integer("prompts", 1, "prompts per generation call")
flags.DEFINE_integer("num_frames", None, "video frames of the generation jobs (default: the config's most)")
flags.DEFINE_bool("compile", False, "also compile the generation jobs for this machine's own platform "
                  "(memory analysis)")
flags.DEFINE_string("output_dir", None, "write each serialized export to <output_dir>/<platform>/<job>.jax_exported")
FLAGS = flags.FLAGS


def mesh_sizes() -> tuple[int, int, int]:
    try:
        sizes = [int(x) for x in FLAGS.mesh]
    except ValueError:
        sizes = []
    if len(sizes) == 2:
        sizes.append(1)
    if len(sizes) != 3 or min(sizes) < 1:
        raise cli.UsageError(f"--mesh must be data,fsdp[,tensor] positive integers, got {','.join(FLAGS.mesh)}")
    return tuple(sizes)


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.config and not FLAGS.train_config:
        raise cli.UsageError("give --config (generation jobs) and/or --train_config (train steps)")
    if FLAGS.prompts < 1:
        raise cli.UsageError(f"--prompts must be >= 1, got {FLAGS.prompts}")
    sizes = mesh_sizes()
    if FLAGS.output_dir:
        try:
            import flatbuffers  # noqa: F401 - what jax.export's serialization needs
        except ImportError:
            raise cli.UsageError("--output_dir needs the 'flatbuffers' package (jax.export serialization): "
                                 "pip install flatbuffers") from None

    import jax

    from landiff_jax import config_file, export
    from landiff_jax.config import LanDiffConfig
    from landiff_jax.files import write_bytes
    from landiff_jax.train.config import TrainConfig

    try:
        platforms = export.check_platforms(FLAGS.platform)
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    cfg = LanDiffConfig.select(config=FLAGS.config) if FLAGS.config else None
    if cfg is not None:
        try:
            cfg.latent_frames(FLAGS.num_frames)
        except ValueError as e:
            raise cli.UsageError(str(e)) from None
    trains = []
    for path in FLAGS.train_config:
        train_cfg = config_file.load(path)
        if not isinstance(train_cfg, TrainConfig):
            raise config_file.ConfigError(f"{path}: get_config() must return a TrainConfig, got "
                                          f"{type(train_cfg).__name__}")
        trains.append((f"train_{Path(path).stem}", train_cfg))

    print(f"jax {jax.__version__} on {export.host_platform()}: lowering for {', '.join(platforms)}")

    def emit(result, state_bytes=None):
        print("\n".join(export.describe(result, state_bytes)), flush=True)
        if FLAGS.output_dir:
            write_bytes(Path(FLAGS.output_dir) / result.platform / f"{result.name}.jax_exported",
                        result.exported.serialize())

    if cfg is not None:
        print(f"generation jobs of {FLAGS.config} in {FLAGS.dtype}, one device")
        for result in export.lower_generation(cfg.with_dtype(FLAGS.dtype), platforms, prompts=FLAGS.prompts,
                                              num_frames=FLAGS.num_frames, compile_here=FLAGS.compile):
            emit(result)
    if trains:
        mesh = export.abstract_mesh(*sizes)
        print(f"train steps on an abstract mesh data {sizes[0]} × fsdp {sizes[1]} × tensor {sizes[2]} "
              f"({mesh.size} devices; the configs' own mesh sizes are not used)")
        for name, train_cfg in trains:
            job = export.train_job(name, train_cfg, mesh)
            for platform in platforms:
                emit(export.lower(job.job, platform), job.state_bytes)


if __name__ == "__main__":
    cli.run(main)
