"""The paper's control-branch recipe (§3.3, appendix A.3) at the released size: the main
CogVideoX-2B DiT frozen, a copy of its first 15 layers with zero-initialised output linears plus
the semantic upsampler trained, AdamW lr 1e-4, batch 128; the released loss (v-prediction on the
zero-SNR DDPM schedule, shift 3, weight 1/(1 − ᾱ), text dropped with p 0.1).

The paper trains first on Theia features (semantic_source 'features', this file), then on the
tokenizer's quantised reconstructions: model.semantic_source=codes (examples with codes; the
frozen tokenizer copy decodes them). Streaming (fixed_frames) prefix training:
model.fixed_frames=7 (the released config comment: 7 prefix latents, 6 generated).
`init_from` is a converted checkpoint (tools/convert.py) holding the base DiT and the control
branch to continue from.

Not in the paper (our choices): the number of updates, a constant lr after 1,000 warm-up
steps, AdamW betas/eps (torch's defaults, no weight decay), clipping at 1, full rematerialisation
(gradients unchanged: the control branch still gets them through the frozen stack), FSDP.

  python tools/train.py --config configs/diffusion_control.py --workdir runs/control data.path=DIR \
      init_from=ckpts/landiff-jax
"""

from landiff_jax.diffusion.config import DiffusionTrainConfig, DiTConfig
from landiff_jax.tokenizer.config import TokenizerConfig
from landiff_jax.train.config import CheckpointConfig, DataConfig, MeshConfig, OptimizerConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="diffusion",
        model=DiffusionTrainConfig(dit=DiTConfig.full(), tokenizer=TokenizerConfig.full(theia=None), mode="control",
                                   semantic_source="features", fixed_frames=0, text_drop_prob=0.1),
        steps=50_000,
        batch_size=128,
        seed=0,
        optimizer=OptimizerConfig(learning_rate=1e-4, warmup_steps=1000, decay="constant", b1=0.9, b2=0.999,
                                  eps=1e-8, weight_decay=0.0, clip_global_norm=1.0),
        mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
        checkpoint=CheckpointConfig(every=1000, keep_last=3, keep_every=10_000),
        data=DataConfig(path="data/diffusion", frames=13),
        log_every=10,
        compute_dtype="bfloat16",
        remat="full",
        init_from="ckpts/landiff-jax",
    )
