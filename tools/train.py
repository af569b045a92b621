"""Train a stage from an experiment file.

  python tools/train.py --config configs/lm_tiny.py [--workdir DIR] [--resume] [key=value ...]
  python tools/train.py --config configs/lm_2b.py --workdir runs/lm_2b batch_size=1024 optimizer.learning_rate=5e-4

Overrides (after the flags) replace config fields, dotted for nested ones (see
landiff_jax/config_file.py). The workdir receives checkpoints/<update>/ (state, data iterator
state, resolved config), metrics.jsonl and TensorBoard files in tb/ (plot with
tools/plot_metrics.py). Multi-process: one process per host with --coordinator/--num_processes/
--process_id (or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, or --auto_distributed
on TPU pods and SLURM). SIGTERM (a preemption notice) or Ctrl-C lets the update under way finish,
saves it and exits with 128 + the signal's number; --resume continues exactly from there.
"""

import sys
from pathlib import Path

from absl import flags, logging  # noqa: E402

from landiff_jax import cli  # noqa: E402

flags.DEFINE_string("config", None, "experiment file configs/<name>.py (defines get_config())")
flags.DEFINE_string("workdir", None, "run directory (default: runs/<config name>)")
flags.DEFINE_bool("resume", False, "continue from the latest complete checkpoint in the workdir")
flags.DEFINE_integer("stop_after", None, "stop (with a checkpoint) after this update, e.g. for time-limited jobs")
flags.DEFINE_string("coordinator", None, "multi-process: host:port of process 0")
flags.DEFINE_integer("num_processes", None, "multi-process: number of processes")
flags.DEFINE_integer("process_id", None, "multi-process: this process's id")
flags.DEFINE_bool("auto_distributed", False, "jax.distributed.initialize() finds the processes itself (TPU, SLURM)")
flags.DEFINE_bool("verbose", False, "show the storage libraries' INFO logs (orbax, grain)")
flags.mark_flag_as_required("config")
FLAGS = flags.FLAGS


def check_data_path(config) -> None:
    from landiff_jax.checkpoint import CONFIG_FILE
    from landiff_jax.config_file import ConfigError

    if not config.data.path or not Path(config.data.path).is_dir():
        raise ConfigError(f"data.path {config.data.path!r} is not a directory of example shards "
                          f"(write them with tools/prepare_data.py, or pass data.path=DIR)")
    if config.init_from and not (Path(config.init_from) / CONFIG_FILE).is_file():
        raise ConfigError(f"init_from {config.init_from!r} is not a converted checkpoint directory "
                          f"(tools/convert.py writes one)")


def check_dataset(config, task) -> None:
    """The dataset's stage and field shapes/dtypes against the task's, before anything is built."""
    import numpy as np

    from landiff_jax.data.records import Field, read_info

    fields = {name: Field(tuple(spec.shape), np.dtype(spec.dtype).name) for name, spec in task.example.items()}
    read_info(config.data.path).expect(config.stage, fields, f"data.path {config.data.path}")


def open_data(config, process_index: int, process_count: int):
    """This process's iterator over the stage's example shards (landiff_jax.data): batches of
    micro_batch_size / process_count examples, in the seed's order, checkpointable."""
    from landiff_jax.data import pipeline

    options = pipeline.DataOptions(global_batch=config.micro_batch_size, seed=config.seed,
                                   shuffle=config.data.shuffle, prefetch_batches=config.data.prefetch,
                                   in_memory=config.data.in_memory)
    return pipeline.batches(Path(config.data.path), options, process_index=process_index,
                            process_count=process_count)


def load_config(path: str, overrides):
    from landiff_jax import config_file
    from landiff_jax.config_file import ConfigError
    from landiff_jax.train.config import TrainConfig

    try:
        config = config_file.load(path, overrides)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # a config's own validation inside get_config()
        raise ConfigError(f"{path}: {e}") from e
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"{path}: get_config() must return a TrainConfig, got {type(config).__name__}")
    return config


def main(argv):
    from landiff_jax.config_file import ConfigError
    from landiff_jax.data.records import RecordError
    from landiff_jax.train.preemption import Stopped

    if not FLAGS.verbose:
        logging.set_verbosity(logging.WARNING)
    workdir = None
    try:
        config = load_config(FLAGS.config, argv[1:])
        check_data_path(config)
        import jax

        from landiff_jax.train import distributed, loop
        from landiff_jax.train.task import make_task

        distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id, auto=FLAGS.auto_distributed)
        task = make_task(config)
        check_dataset(config, task)
        data = open_data(config, jax.process_index(), jax.process_count())
        workdir = FLAGS.workdir or str(Path("runs") / Path(FLAGS.config).stem)
        loop.train(config, task, data, workdir, resume=FLAGS.resume, stop_after=FLAGS.stop_after)
    except (ConfigError, RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Stopped as e:  # SIGTERM / Ctrl-C: the update under way finished and was saved
        print(e, file=sys.stderr)
        sys.exit(e.exit_code)
    print(f"done: checkpoints and metrics in {workdir}")


if __name__ == "__main__":
    cli.run(main, compiles=True)
