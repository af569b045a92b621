"""Stage 4 of the tiny LanDiff (configs/tiny_landiff.py): its base DiT as a text → latent model,
from scratch (the role CogVideoX-2B plays at full size), on latents sampled from the trained
VAE's posterior of the synthetic clips and the frozen random T5's caption states
(data/tiny/diffusion). The released diffusion loss (v-prediction, zero-SNR DDPM shift 3, text
dropped with p 0.1), with an EMA of the weights (what is shipped). `model.scale_factor` is set by
tools/train_tiny.py to the value it measured on the latents. float32 compute, as the shipped
model's first phase was trained (the refining phases compute in bfloat16). The 6-layer scan is
unrolled (`scan_unroll` 6: the same loss; one H200 update of 256 takes 47 ms instead of 69, the
scan's bookkeeping gone), a training-only setting: the converted checkpoint keeps the system's.
Budget: ~10 min on one H200.

  python tools/train.py --config configs/tiny_dit.py --workdir runs/tiny/dit data.path=DIR model.scale_factor=X
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
        model=DiffusionTrainConfig(dit=dataclasses.replace(SYSTEM.dit, scan_unroll=6), mode="base", text_drop_prob=0.1,
                                   scale_factor=SYSTEM.vae.scale_factor),
        steps=12000,
        batch_size=256,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=300, decay="cosine", final_lr_fraction=0.1,
                                  b1=0.9, b2=0.99, weight_decay=0.0, clip_global_norm=1.0),
        ema_decay=0.9995,
        mesh=MeshConfig(data=-1),
        checkpoint=CheckpointConfig(every=500, keep_last=1),
        data=DataConfig(prefetch=8, in_memory=True, path="data/tiny/diffusion", frames=SYSTEM.dit.latent_frames),
        log_every=50,
        compute_dtype="float32",
    )
