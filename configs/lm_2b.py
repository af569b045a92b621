"""The paper's semantic-LM recipe (appendix A.2) at the released size (2.05B parameters):
batch 4,096 sequences, AdamW, lr 1e-3 after 1,000 linear warm-up steps, cosine decay to 0.1×;
the text / motion-score / frames conditions replaced by their null embeddings with
probabilities 0.1 / 0.5 / 0.5. Params float32, bf16 compute, FSDP over every device.

Not in the paper (our choices): the number of updates, the AdamW betas/eps/weight decay (torch's
defaults, which the original's optimizer uses unless told otherwise), clipping at global norm 1.

  python tools/train.py --config configs/lm_2b.py --workdir runs/lm_2b data.path=DIR
"""

from landiff_jax.lm.config import LMConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="lm",
        model=LMConfig.full(text_drop_prob=0.1, motion_score_drop_prob=0.5, frames_drop_prob=0.5),
        steps=100_000,
        batch_size=4096,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-3, warmup_steps=1000, decay="cosine", final_lr_fraction=0.1,
                                  b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, clip_global_norm=1.0,
                                  accumulation_steps=1),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every=1000, keep_last=3, keep_every=10_000),
        data=DataConfig(path="data/lm", frames=13, text_len=512),
        log_every=10,
        compute_dtype="bfloat16",
        remat="none",
    )
