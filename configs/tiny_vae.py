"""Stage 1 of the tiny LanDiff (configs/tiny_landiff.py): its 3D causal VAE, from scratch, on
clips of the synthetic world (uint8 9×64×96; tools/train_tiny.py writes them to data/tiny/vae).
Loss: L1 + squared-error reconstruction + 1e-4 · KL (landiff_jax/vae/losses.py). Budget: ~5 min on one H200.

  python tools/train.py --config configs/tiny_vae.py --workdir runs/tiny/vae data.path=DIR
"""

from pathlib import Path

from landiff_jax import config_file
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig
from landiff_jax.vae.losses import VAELossConfig

SYSTEM = config_file.load(Path(__file__).with_name("tiny_landiff.py"))


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="vae",
        model=VAELossConfig(vae=SYSTEM.vae, kl_weight=1e-4, l2_weight=1.0),
        steps=3000,
        batch_size=32,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=200, decay="cosine", final_lr_fraction=0.05,
                                  b1=0.9, b2=0.99, weight_decay=0.0, clip_global_norm=1.0),
        mesh=MeshConfig(data=-1),
        checkpoint=CheckpointConfig(every=1000, keep_last=1),
        data=DataConfig(prefetch=8, in_memory=True, path="data/tiny/vae", frames=SYSTEM.dit.latent_frames,
                        video_size=SYSTEM.video_size),
        log_every=50,
        compute_dtype="bfloat16",
    )
