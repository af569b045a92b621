"""A CPU-sized semantic-tokenizer run: the paper's recipe (configs/tokenizer.py: constant lr,
EMA codebook) at the public fixtures' tiny size, float32, on the features tools/prepare_data.py
writes for the synthetic world with random tiny models (data/tokenizer_tiny).

  python tools/train.py --config configs/tokenizer_tiny.py --workdir runs/tokenizer_tiny
"""

from landiff_jax.tokenizer.config import TokenizerTrainConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="tokenizer",
        model=TokenizerTrainConfig.tiny(),
        steps=300,
        batch_size=8,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=0, decay="constant", b1=0.9, b2=0.999,
                                  weight_decay=0.0, clip_global_norm=1.0),
        mesh=MeshConfig(data=-1, fsdp=1, tensor=1),
        checkpoint=CheckpointConfig(every=100, keep_last=2),
        data=DataConfig(path="data/tokenizer_tiny", frames=3),
        log_every=10,
        compute_dtype="float32",
    )
