"""A CPU-sized control-branch run: the paper's recipe (configs/diffusion_control.py) at the
random-weights demo size (LanDiffConfig.tiny), from scratch (a random frozen main DiT, the
control branch a copy of its first layers with zero linears), float32, on the examples that
tools/prepare_data.py writes for the synthetic world with random tiny models
(data/diffusion_tiny, semantic condition: codes).

  python tools/train.py --config configs/diffusion_control_tiny.py --workdir runs/control_tiny
"""

import dataclasses

from landiff_jax.config import LanDiffConfig
from landiff_jax.diffusion.config import DiffusionTrainConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig


def get_config() -> TrainConfig:
    system = LanDiffConfig.tiny()
    return TrainConfig(
        stage="diffusion",
        model=DiffusionTrainConfig(dit=system.dit, tokenizer=dataclasses.replace(system.tokenizer, theia=None),
                                   mode="control", semantic_source="codes", text_drop_prob=0.1,
                                   scale_factor=system.vae.scale_factor),
        steps=300,
        batch_size=8,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-4, warmup_steps=0, decay="constant", b1=0.9, b2=0.999,
                                  weight_decay=0.0, clip_global_norm=1.0),
        mesh=MeshConfig(data=-1, fsdp=1, tensor=1),
        checkpoint=CheckpointConfig(every=100, keep_last=2),
        data=DataConfig(path="data/diffusion_tiny", frames=system.dit.latent_frames),
        log_every=10,
        compute_dtype="float32",
    )
