"""Configuration of the semantic LM (the original's `Semantic1DLM` built by `build_llm()`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

NUM_SPECIALS = 7  # EOS, BOS, START/END of I-frame, START/END of P-frame, PAD
# names of `jax.checkpoint_policies` accepted by LMConfig.remat, besides "none" and "full"
REMAT_POLICIES = ("dots_saveable", "dots_with_no_batch_dims_saveable", "nothing_saveable")
# LMConfig.remat values besides those: a dots policy that also keeps each block's attention
# (model.remat_policy), so that the backward does not rerun a fused attention
ATTENTION_SAVING_POLICIES = tuple(f"{p}+attention" for p in REMAT_POLICIES)
TRAIN_ATTENTIONS = ("xla", "cudnn", "tpu_flash")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    # semantic tokenizer numbers the LM needs (codebook and frame layout)
    codebook_size: int = 2048
    iframe_tokens: int = 330
    pframe_tokens: int = 74
    segment_length: int = 13  # frames per group: one I-frame then segment_length - 1 P-frames
    # GPT of LLaMA blocks
    hidden: int = 2048
    num_heads: int = 16
    num_layers: int = 24
    mlp_dim: int = 11008
    norm_eps: float = 1e-5  # RMSNorm of the blocks
    final_norm_eps: float = 1e-5  # final LayerNorm (torch default)
    rope_theta: float = 10000.0
    max_len: int = 32768  # longest sequence the original's RoPE table covers
    # TextCond: MLP on the T5 features (text_dim -> hidden -> hidden) and a null embedding
    text_dim: int = 4096
    # MicroConditioner: sincos(freq_dim) -> Linear(micro_hidden) -> SiLU -> Linear(hidden) per key
    micro_keys: tuple[str, ...] = ("frames", "motion_score")
    micro_hidden: int = 512
    micro_freq_dim: int = 256
    # training-time condition drops (classifier-free guidance). A micro key with a drop
    # probability > 0 gets a learned null frequency embedding (`micro_cond/null_<key>`).
    text_drop_prob: float = 0.1  # released cfg_drop_prob
    frames_drop_prob: float = 0.0  # released: no drop; the paper: 0.5
    motion_score_drop_prob: float = 0.0  # released: no drop; the paper: 0.5
    remat: str = "none"  # rematerialisation of the scanned block under differentiation: see REMAT_POLICIES
    # numerics
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    decode_attention: str = "xla"  # nn.attention.DECODE_ATTENTION, chosen by `runtime`
    # implementation of the uncached full-sequence forward's causal attention (training):
    # 'xla', 'cudnn' (bf16/fp16 on GPU) or 'tpu_flash' (bf16/fp16 on one TPU); chosen by
    # `runtime`, never probed while traced
    train_attention: str = "xla"

    def __post_init__(self):
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.head_dim}")
        if tuple(sorted(self.micro_keys)) != tuple(self.micro_keys):
            raise ValueError(f"micro_keys must be sorted as the original sorts them: {self.micro_keys}")
        if min(self.codebook_size, self.iframe_tokens, self.pframe_tokens, self.segment_length) < 1:
            raise ValueError("codebook_size, iframe_tokens, pframe_tokens and segment_length must be >= 1")
        for key in ("frames", "motion_score"):
            if not 0 <= self.micro_drop_prob(key) < 1:
                raise ValueError(f"{key}_drop_prob must be in [0, 1), got {self.micro_drop_prob(key)}")
            if self.micro_drop_prob(key) > 0 and key not in self.micro_keys:
                raise ValueError(f"{key}_drop_prob > 0 but '{key}' is not a micro key {self.micro_keys}")
        if not 0 <= self.text_drop_prob < 1:
            raise ValueError(f"text_drop_prob must be in [0, 1), got {self.text_drop_prob}")
        remats = ("none", "full") + REMAT_POLICIES + ATTENTION_SAVING_POLICIES
        if self.remat not in remats:
            raise ValueError(f"remat {self.remat!r}: expected one of {remats}")
        if self.train_attention not in TRAIN_ATTENTIONS:
            raise ValueError(f"train_attention {self.train_attention!r}: expected one of {TRAIN_ATTENTIONS}")

    def micro_drop_prob(self, key: str) -> float:
        """Drop probability of a micro-condition key (0 for keys without a drop setting)."""
        return {"frames": self.frames_drop_prob, "motion_score": self.motion_score_drop_prob}.get(key, 0.0)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + NUM_SPECIALS

    def replace(self, **kw) -> "LMConfig":
        return dataclasses.replace(self, **kw)

    @classmethod
    def full(cls, **kw) -> "LMConfig":
        """The released sizes (2.05B parameters in llm/model.safetensors)."""
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> "LMConfig":
        base = dict(
            codebook_size=64, iframe_tokens=6, pframe_tokens=2, segment_length=3, hidden=64, num_heads=4,
            num_layers=2, mlp_dim=160, max_len=512, text_dim=32, micro_hidden=48, micro_freq_dim=32,
        )
        return cls(**{**base, **kw})
