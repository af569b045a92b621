"""Stage 3 of the tiny LanDiff (configs/tiny_landiff.py): its semantic LM, from scratch, on the
trained tokenizer's codes of the synthetic clips and the frozen random T5's states of their
captions (data/tiny/lm). The paper's condition drops (text 0.1, frames and motion score 0.5).
Budget: ~5 min on one H200.

  python tools/train.py --config configs/tiny_lm.py --workdir runs/tiny/lm data.path=DIR
"""

from pathlib import Path

from landiff_jax import config_file
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig

SYSTEM = config_file.load(Path(__file__).with_name("tiny_landiff.py"))


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="lm",
        model=SYSTEM.lm.replace(text_drop_prob=0.1, frames_drop_prob=0.5, motion_score_drop_prob=0.5),
        steps=6000,
        batch_size=64,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=200, decay="cosine", final_lr_fraction=0.1,
                                  b1=0.9, b2=0.99, weight_decay=0.01, clip_global_norm=1.0),
        mesh=MeshConfig(data=-1),
        checkpoint=CheckpointConfig(every=2000, keep_last=1),
        data=DataConfig(prefetch=8, in_memory=True, path="data/tiny/lm", frames=SYSTEM.lm.segment_length,
                        text_len=SYSTEM.dit.text_length),
        log_every=50,
        compute_dtype="float32",
    )
