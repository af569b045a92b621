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
TRAIN_ATTENTIONS = ("xla", "cudnn")


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
    decode_attention: str | None = None  # None: the Pallas kernel for bf16 on GPU, else 'xla' (see nn.decode_attention)
    # implementation of the uncached full-sequence forward's causal attention (training):
    # 'xla', or 'cudnn' (bf16/fp16 on GPU; chosen by whoever builds the config, e.g. the bench)
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

    @classmethod
    def from_original(cls, config: dict, *, text_dim: int, **kw) -> "LMConfig":
        """From a `build_llm()`-shaped config dict (meta.json `config`), original argument names.

        `text_dim` is the T5 encoder's d_model (it lives in the T5 directory, not in this config).
        Settings this port does not implement are rejected rather than silently ignored.
        """
        tr = config["transformer"]
        blocks = tr["blocks"]
        block = blocks[0]
        if any(b != block for b in blocks):
            raise ValueError("transformer.blocks differ from each other; only identical blocks are supported")
        if "tanh" not in str(block.get("activation", "")):
            raise ValueError(f"transformer block activation {block.get('activation')!r}: only GELU(tanh) is supported")
        tok = config["tokenizer"]
        codebook = tok["tokenizer"]["quantizer"]["codebook_size"]
        if tok.get("segment_stride", tok.get("segment_length", 13)) != tok.get("segment_length", 13):
            raise ValueError("segment_stride != segment_length (overlapping groups) is not supported")
        cond = config["cond_model"]
        if not cond.get("use_mlp_embeddings", False):
            raise ValueError("cond_model.use_mlp_embeddings=False (a single Linear) is not supported")
        if not cond.get("cfg_drop_prob", 0) > 0:
            raise ValueError("cond_model.cfg_drop_prob must be > 0: the null text embedding is needed for guidance")
        micro = config["micro_condition"]
        if micro.get("adaln_condition_keys"):
            raise ValueError("micro_condition adaln keys are not supported")
        drop_probs = dict(micro.get("drop_probs") or {})
        unknown = set(drop_probs) - {"frames", "motion_score"}
        if unknown:
            raise ValueError(f"micro_condition.drop_probs keys {sorted(unknown)}: only frames / motion_score are supported")
        for flag, released in (("use_end_of_IFrame", True), ("use_end_of_PFrame", True), ("micro_cond_first", True),
                               ("predict_motion_score", False)):
            if config.get(flag, released) != released:
                raise ValueError(f"{flag}={config[flag]} is not supported (released: {released})")
        hidden = tr["hidden_dim"]
        if cond["embed_dim"] != hidden or micro["out_dim"] != hidden:
            raise ValueError("cond_model.embed_dim and micro_condition.out_dim must equal the transformer hidden_dim")
        rope = tr["rope"]
        out = cls(
            codebook_size=codebook,
            iframe_tokens=config.get("Iframe_len", 330),
            pframe_tokens=config.get("Pframe_len", 74),
            segment_length=tok.get("segment_length", 13),
            hidden=hidden,
            num_heads=block["num_heads"],
            num_layers=len(blocks),
            mlp_dim=block["mlp_dim"],
            rope_theta=float(rope.get("theta_base", 10000)),
            max_len=rope["max_len"],
            text_dim=text_dim,
            micro_keys=tuple(sorted(micro["crossattn_condition_keys"])),
            micro_hidden=micro.get("hidden_dim", 512),
            micro_freq_dim=micro.get("frequency_embedding_size", 256),
            text_drop_prob=float(cond["cfg_drop_prob"]),
            frames_drop_prob=float(drop_probs.get("frames", 0.0)),
            motion_score_drop_prob=float(drop_probs.get("motion_score", 0.0)),
            **kw,
        )
        if tr["visual_vocab_size"] != out.vocab_size:
            raise ValueError(f"transformer.visual_vocab_size {tr['visual_vocab_size']} != codebook_size + 7 = {out.vocab_size}")
        if rope["dim"] != out.head_dim:
            raise ValueError(f"rope.dim {rope['dim']} != head dim {out.head_dim}")
        return out
