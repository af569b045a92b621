"""Stage 4 of the tiny LanDiff (configs/tiny_landiff.py): its base DiT as a text → latent model,
from scratch (the role CogVideoX-2B plays at full size), on latents sampled from the trained
VAE's posterior of the synthetic clips and the frozen random T5's caption states
(data/tiny/diffusion). The released diffusion loss (v-prediction, zero-SNR DDPM shift 3, text
dropped with p 0.1), with an EMA of the weights (what is shipped). `model.scale_factor` is set by
tools/train_tiny.py to the value it measured on the latents. bfloat16 compute (float32 master
weights), as the refining phases. Budget: ~7 min on one H200 (≈ 30 updates/s with the dataset
held in memory; reading each batch's records paced it at 19/s).

  python tools/train.py --config configs/tiny_dit.py --workdir runs/tiny/dit data.path=DIR model.scale_factor=X
"""

from pathlib import Path

from landiff_jax import config_file
from landiff_jax.diffusion.config import DiffusionTrainConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig

SYSTEM = config_file.load(Path(__file__).with_name("tiny_landiff.py"))


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="diffusion",
        model=DiffusionTrainConfig(dit=SYSTEM.dit, mode="base", text_drop_prob=0.1,
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
        compute_dtype="bfloat16",
    )
