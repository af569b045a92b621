"""The paper's semantic-tokenizer recipe (§3.1, appendix A.1) at the released size: AdamW at a
constant lr 1e-4, batch 96, on Theia features of 13-frame groups (I-frame 330 tokens, P-frames
74), MSE + commitment (weights 1 and 1), codebook 2,048 × 16 updated by EMA (decay 0.8), k-means
initialisation, dead codes (EMA cluster size < 2) replaced, rotation-trick gradient. Theia is not
run: the examples hold stored features (tools/prepare_data.py --stages tokenizer).

Not in the paper (our choices): the number of updates, AdamW betas/eps/decay (torch's defaults,
no weight decay), clipping at global norm 1, FSDP over every device, full rematerialisation of the
encoder/decoder layers (a 13-frame clip is 18,768 tokens: ~45 GB of activations per example
without it; gradients unchanged).

  python tools/train.py --config configs/tokenizer.py --workdir runs/tokenizer data.path=DIR
"""

from landiff_jax.tokenizer.config import TokenizerConfig, TokenizerTrainConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="tokenizer",
        model=TokenizerTrainConfig(model=TokenizerConfig.full(theia=None), decay=0.8, threshold_ema_dead_code=2.0,
                                   kmeans_init=True, rotation_trick=True),
        steps=100_000,
        batch_size=96,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-4, warmup_steps=0, decay="constant", b1=0.9, b2=0.999, eps=1e-8,
                                  weight_decay=0.0, clip_global_norm=1.0),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every=1000, keep_last=3, keep_every=10_000),
        data=DataConfig(path="data/tokenizer", frames=13),
        log_every=10,
        compute_dtype="bfloat16",
        remat="full",
    )
