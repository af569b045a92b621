"""Stage 2 of the tiny LanDiff (configs/tiny_landiff.py): its semantic tokenizer, from scratch,
on the frozen random Theia's features of the synthetic clips (data/tiny/tokenizer). The
released tokenizer's loss and EMA codebook (decay 0.8, k-means init, dead codes under 2
replaced, rotation trick). Budget: ~3 min on one H200.

  python tools/train.py --config configs/tiny_tokenizer.py --workdir runs/tiny/tokenizer data.path=DIR
"""

import dataclasses
from pathlib import Path

from landiff_jax import config_file
from landiff_jax.tokenizer.config import TokenizerTrainConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig

SYSTEM = config_file.load(Path(__file__).with_name("tiny_landiff.py"))


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="tokenizer",
        model=TokenizerTrainConfig(model=dataclasses.replace(SYSTEM.tokenizer, theia=None)),
        steps=3000,
        batch_size=64,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=5e-4, warmup_steps=100, decay="cosine", final_lr_fraction=0.1,
                                  b1=0.9, b2=0.99, weight_decay=0.0, clip_global_norm=1.0),
        mesh=MeshConfig(data=-1),
        checkpoint=CheckpointConfig(every=1000, keep_last=1),
        data=DataConfig(prefetch=8, in_memory=True, path="data/tiny/tokenizer", frames=SYSTEM.tokenizer.temporal_size),
        log_every=50,
        compute_dtype="float32",
    )
