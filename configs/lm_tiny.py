"""A CPU-sized semantic-LM run (minutes on a laptop): the tiny LM on the examples that
`tools/prepare_data.py` writes to data/lm_tiny (synthetic world), float32 compute.

  python tools/train.py --config configs/lm_tiny.py --workdir runs/lm_tiny
"""

from landiff_jax.lm.config import LMConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="lm",
        model=LMConfig.tiny(),
        steps=300,
        batch_size=8,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=30, decay="cosine", final_lr_fraction=0.1,
                                  b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, clip_global_norm=1.0),
        mesh=MeshConfig(data=-1, fsdp=1, tensor=1),
        checkpoint=CheckpointConfig(every=100, keep_last=2),
        data=DataConfig(path="data/lm_tiny", frames=3, text_len=8),
        log_every=10,
        compute_dtype="float32",
    )
