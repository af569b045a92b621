"""What a training run is: frozen dataclasses read from `configs/<name>.py` (see config_file).

`TrainConfig.model` is the stage's own (frozen, hashable) config, e.g. an LMConfig; the trainer
applies the dtype policy (float32 master weights, `compute_dtype` for the forward) and `remat`
to it when it builds the task (train.task.make_task). Step counts are optimizer updates: with
`optimizer.accumulation_steps = k` every update consumes k micro-batches of batch_size / k.
"""

from __future__ import annotations

import dataclasses
from typing import Any

DECAYS = ("cosine", "constant")
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-3  # peak, reached at the end of the warm-up
    warmup_steps: int = 0  # linear from 0
    decay: str = "cosine"  # after warm-up: "cosine" to final_lr_fraction × peak at `steps`, or "constant"
    final_lr_fraction: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.0  # AdamW's decoupled decay (on every trainable param)
    clip_global_norm: float | None = 1.0  # None: no clipping
    accumulation_steps: int = 1  # micro-batches per update (optax.MultiSteps)

    def __post_init__(self):
        if self.decay not in DECAYS:
            raise ValueError(f"optimizer.decay must be one of {DECAYS}, got {self.decay!r}")
        if self.accumulation_steps < 1 or self.warmup_steps < 0:
            raise ValueError("optimizer.accumulation_steps must be >= 1 and warmup_steps >= 0")
        if self.learning_rate <= 0 or not 0 <= self.final_lr_fraction <= 1:
            raise ValueError("optimizer.learning_rate must be > 0 and final_lr_fraction in [0, 1]")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Sizes of the (data, fsdp, tensor) mesh over all devices of all processes; one may be -1."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    every: int = 1000  # updates between saves (and one at the end)
    keep_last: int = 3  # newest checkpoints kept
    keep_every: int | None = None  # also keep every step that is a multiple of this
    async_save: bool = True

    def __post_init__(self):
        if self.every < 1 or self.keep_last < 1 or (self.keep_every is not None and self.keep_every < 1):
            raise ValueError("checkpoint.every, keep_last and keep_every must be >= 1")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the stage's preprocessed example shards are (tools/prepare_data.py writes them)."""

    path: str = ""
    shuffle: bool = True
    prefetch: int = 2  # batches prepared ahead
    in_memory: bool = False  # hold the decoded dataset in host memory (small datasets: the tiny recipe)
    # the fixed shapes of the dataset's examples (checked against every batch before compiling)
    frames: int = 13  # semantic / latent frames per example
    text_len: int = 512  # text embedding rows per example (right-padded)
    video_size: tuple[int, int] = (480, 720)  # (H, W) of the frames of video examples (stage vae)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    stage: str  # the task's name in train.task (e.g. "lm")
    model: Any  # the stage's config dataclass (LMConfig, ...)
    steps: int = 1000  # optimizer updates
    batch_size: int = 8  # global examples per update (over all processes)
    seed: int = 0
    optimizer: OptimizerConfig = OptimizerConfig()
    ema_decay: float | None = None  # EMA of the trainable params; None: off
    mesh: MeshConfig = MeshConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    data: DataConfig = DataConfig()
    log_every: int = 10
    compute_dtype: str = "bfloat16"  # forward/backward dtype; params and optimizer stay float32
    remat: str = "none"  # rematerialisation policy name, passed to the model config
    # a converted checkpoint directory (tools/convert.py's format) whose params start the run
    # instead of the stage's from-scratch init (e.g. the frozen base DiT of a control branch)
    init_from: str = ""

    def __post_init__(self):
        if self.steps < 1 or self.log_every < 1:
            raise ValueError("steps and log_every must be >= 1")
        if self.batch_size < 1 or self.batch_size % self.optimizer.accumulation_steps:
            raise ValueError(f"batch_size {self.batch_size} must be a positive multiple of "
                             f"optimizer.accumulation_steps {self.optimizer.accumulation_steps}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.optimizer.accumulation_steps

    def replace(self, **kw) -> TrainConfig:
        return dataclasses.replace(self, **kw)
