"""The original's LM configuration (`build_llm()`-shaped dict, original argument names) → LMConfig."""

from __future__ import annotations

from landiff_jax.lm.config import NUM_SPECIALS, LMConfig


def lm_config(config: dict, *, text_dim: int, **kw) -> LMConfig:
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
    out = LMConfig(
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
        raise ValueError(f"transformer.visual_vocab_size {tr['visual_vocab_size']} != codebook_size + {NUM_SPECIALS} "
                         f"= {out.vocab_size}")
    if rope["dim"] != out.head_dim:
        raise ValueError(f"rope.dim {rope['dim']} != head dim {out.head_dim}")
    return out
