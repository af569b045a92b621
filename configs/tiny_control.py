"""Stage 5 of the tiny LanDiff (configs/tiny_landiff.py): the control branch and semantic
conditioner on the frozen base DiT of stage 4, as the paper trains LanDiff's on CogVideoX-2B:
a copy of the base's first 3 layers with zero output linears. The semantic condition is the
frozen trained tokenizer's decoding of the clip's codes (what the LM's codes become at
inference). `init_from` is the converted checkpoint holding the base DiT (tools/train_tiny.py
assembles it); `model.scale_factor` as in stage 4; an EMA of the weights is shipped. Its loss
is flat after a few hundred updates. Both scanned stacks unrolled 3 layers per iteration (the
same loss; 54 ms per update of 128 on one H200 instead of 64). Budget: ~3 min on one H200.

  python tools/train.py --config configs/tiny_control.py --workdir runs/tiny/control data.path=DIR \
      init_from=CKPT model.scale_factor=X
"""

import dataclasses
from pathlib import Path

from landiff_jax import config_file
from landiff_jax.diffusion.config import DiffusionTrainConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig

SYSTEM = config_file.load(Path(__file__).with_name("tiny_landiff.py"))


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="diffusion",
        model=DiffusionTrainConfig(dit=dataclasses.replace(SYSTEM.dit, scan_unroll=3),
                                   tokenizer=dataclasses.replace(SYSTEM.tokenizer, theia=None),
                                   mode="control", semantic_source="codes", text_drop_prob=0.1,
                                   scale_factor=SYSTEM.vae.scale_factor),
        steps=2000,
        batch_size=128,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=5e-4, warmup_steps=100, decay="cosine", final_lr_fraction=0.1,
                                  b1=0.9, b2=0.99, weight_decay=0.0, clip_global_norm=1.0),
        ema_decay=0.998,
        mesh=MeshConfig(data=-1),
        checkpoint=CheckpointConfig(every=1000, keep_last=1),
        data=DataConfig(prefetch=8, in_memory=True, path="data/tiny/diffusion", frames=SYSTEM.dit.latent_frames),
        log_every=50,
        compute_dtype="float32",
        init_from="runs/tiny/base_checkpoint",
    )
