"""Configuration of the semantic video tokenizer (VideoVQ) and of its Theia feature extractor."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Mapping

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class TheiaConfig:
    """The DeiT/ViT backbone Theia computes features with, and the grid they are fitted to."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    # the position table is learned for image_size² pixels and resized to each frame's grid
    image_size: int = 224
    layer_norm_eps: float = 1e-12
    # (h, w) the features are zero-padded (bottom/right) and cropped to
    output_shape: tuple[int, int] = (30, 45)

    @property
    def table_grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_original(cls, cfg: Mapping[str, Any]) -> "TheiaConfig | None":
        """From the `feature_extractor` block of a `build_tokenizer()` config; None when the block
        does not describe a TheiaExtractor (e.g. a parameter-free stand-in)."""
        if "TheiaExtractor" not in str(cfg.get("__target__", "")) or "output_shape" not in cfg:
            return None
        if not cfg.get("interpolate", False):
            raise ValueError("feature_extractor.interpolate=False (Lanczos resize to 224²) is not supported")
        described = cfg.get("__theia_config__", cfg)
        vit = next((v for k, v in described.items() if k.startswith("backbone_ViTConfig")), None) or {}
        if vit.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"Theia backbone hidden_act {vit['hidden_act']!r} is not supported (expected 'gelu')")
        base = cls()
        return cls(
            hidden_size=vit.get("hidden_size", base.hidden_size),
            num_layers=vit.get("num_hidden_layers", base.num_layers),
            num_heads=vit.get("num_attention_heads", base.num_heads),
            mlp_dim=vit.get("intermediate_size", base.mlp_dim),
            patch_size=vit.get("patch_size", base.patch_size),
            image_size=vit.get("image_size", base.image_size),
            layer_norm_eps=vit.get("layer_norm_eps", base.layer_norm_eps),
            output_shape=tuple(cfg["output_shape"]),
        )


# build_tokenizer() override keys that do not change the model computed here
_IGNORED_OVERRIDES = {"attention_imp", "ckpt_path", "fwd_dtype"}


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """VideoVQ: TiTok encoder → vector quantizer → TiTok decoder over Theia feature grids.

    Encoder and decoder share every size, as in `build_tokenizer()`.
    """

    image_size: tuple[int, int] = (30, 45)  # feature grid (h, w) before patching
    image_channels: int = 768
    patch_size: int = 1
    width: int = 768
    num_layers: int = 12
    num_heads: int = 12
    num_latent_tokens: int = 1218
    token_size: int = 768
    temporal_size: int = 13
    pframe_tokens: int = 74
    output_channels: int = 768
    attn_bias: bool = False
    ln_eps: float = 1e-5
    codebook_size: int = 2048
    codebook_dim: int = 16
    mean_std_dim: int | None = 768
    # Rope3DPosEmb limits (positions beyond them do not exist in the original's tables)
    rope_theta: float = 10000.0
    rope_max_time: int = 100
    rope_max_height: int = 30
    rope_max_width: int = 45
    rope_one_dim_max_time: int = 100000
    theia: TheiaConfig | None = TheiaConfig()
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 16:
            raise ValueError(f"3D RoPE (multiple=16) needs head_dim % 16 == 0, got {self.head_dim}")
        if self.iframe_tokens <= 0:
            raise ValueError(
                f"num_latent_tokens {self.num_latent_tokens} leaves no I-frame tokens for "
                f"temporal_size {self.temporal_size} × PFrame_tokens {self.pframe_tokens}"
            )
        if any(s % self.patch_size for s in self.image_size):
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.grid[0] > self.rope_max_height or self.grid[1] > self.rope_max_width:
            raise ValueError(f"grid {self.grid} exceeds the 3D RoPE table ({self.rope_max_height}, {self.rope_max_width})")

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        return (self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size)

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def iframe_tokens(self) -> int:
        return self.num_latent_tokens - (self.temporal_size - 1) * self.pframe_tokens

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def has_vq_projection(self) -> bool:
        """vector_quantize_pytorch projects in/out only when codebook_dim differs from the input dim."""
        return self.codebook_dim != self.token_size

    def num_codes(self, num_frames: int) -> int:
        """Latent length of a clip of `num_frames` frames: I + (T−1)·P."""
        self.check_num_frames(num_frames)
        return self.iframe_tokens + (num_frames - 1) * self.pframe_tokens

    def seq_len(self, num_frames: int) -> int:
        return num_frames * self.tokens_per_frame + self.num_codes(num_frames)

    def check_num_frames(self, num_frames: int) -> None:
        if not isinstance(num_frames, numbers.Integral) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if num_frames > self.rope_max_time:
            raise ValueError(f"num_frames {num_frames} exceeds the 3D RoPE table's max_time {self.rope_max_time}")
        latent = self.iframe_tokens + (num_frames - 1) * self.pframe_tokens
        if latent > self.rope_one_dim_max_time:
            raise ValueError(f"{latent} latent tokens exceed the RoPE table's one_dim_max_time {self.rope_one_dim_max_time}")

    def frames_for_codes(self, num_codes: int) -> int:
        """Inverse of `num_codes`; raises if no frame count gives `num_codes` codes."""
        rest = num_codes - self.iframe_tokens
        if rest < 0 or (self.pframe_tokens and rest % self.pframe_tokens):
            raise ValueError(
                f"{num_codes} codes is not I + (T−1)·P for I={self.iframe_tokens}, P={self.pframe_tokens}"
            )
        return 1 + (rest // self.pframe_tokens if self.pframe_tokens else 0)

    # ---- constructors --------------------------------------------------------------------
    @classmethod
    def full(cls, **kw) -> "TokenizerConfig":
        """The released `build_tokenizer()` sizes."""
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> "TokenizerConfig":
        """A few-thousand-parameter model for tests (the public fixtures' sizes)."""
        base = dict(
            image_size=(4, 6), image_channels=16, width=64, num_layers=2, num_heads=4,
            num_latent_tokens=10, token_size=32, temporal_size=3, pframe_tokens=2,
            output_channels=16, codebook_size=64, codebook_dim=8, mean_std_dim=16,
            rope_max_time=10, rope_max_height=4, rope_max_width=6, rope_one_dim_max_time=1000,
            theia=TheiaConfig(hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32, output_shape=(4, 6)),
        )
        base.update(kw)
        return cls(**base)

    @classmethod
    def from_original(cls, cfg: Mapping[str, Any], **kw) -> "TokenizerConfig":
        """From the nested `build_tokenizer()` config (as in the fixtures' meta.json `config`).

        `kw` sets fields the original does not describe (dtype, param_dtype)."""
        if cfg.get("model_type", "transformer") != "transformer":
            raise ValueError(f"model_type {cfg.get('model_type')!r} is not supported (only 'transformer')")
        if cfg.get("num_latent_tokens") is not None:
            raise ValueError("VideoVQ.num_latent_tokens (shared latent_tokens parameter) is not supported")
        enc, dec, vq = cfg["encoder"], cfg["decoder"], cfg["quantizer"]
        _check_supported(enc, "encoder", "VIDEO_ENCODER_MASK")
        _check_supported(dec, "decoder", "VIDEO_DECODER_MASK")
        if not enc.get("inside_latent_tokens", False):
            raise ValueError("encoder.inside_latent_tokens=False is not supported")
        shared = ("image_size", "image_channels", "patch_size", "width", "num_layers", "num_heads",
                  "num_latent_tokens", "token_size", "temporal_size", "PFrame_tokens", "bias")
        differ = [k for k in shared if _norm(enc.get(k)) != _norm(dec.get(k))]
        if differ:
            raise ValueError(f"encoder and decoder differ in {differ}; only shared sizes are supported")
        if vq.get("dim", enc["token_size"]) != enc["token_size"]:
            raise ValueError(f"quantizer.dim {vq['dim']} != encoder.token_size {enc['token_size']}")
        rope = enc["rope_layer"]
        width, heads = enc["width"], enc["num_heads"]
        if rope.get("multiple") != 16 or rope.get("dim") != width // heads:
            raise ValueError(f"rope_layer must be multiple=16 with dim=head_dim={width // heads}, got {rope}")
        if _norm(rope) != _norm(dec["rope_layer"]):
            raise ValueError("encoder and decoder rope_layer configs differ")
        return cls(
            image_size=tuple(enc["image_size"]),
            image_channels=enc["image_channels"],
            patch_size=enc["patch_size"],
            width=width,
            num_layers=enc["num_layers"],
            num_heads=heads,
            num_latent_tokens=enc["num_latent_tokens"],
            token_size=enc["token_size"],
            temporal_size=enc["temporal_size"],
            pframe_tokens=enc["PFrame_tokens"],
            output_channels=dec["output_channels"],
            attn_bias=bool(enc.get("bias", True)),
            codebook_size=vq["codebook_size"],
            codebook_dim=vq.get("codebook_dim") or enc["token_size"],
            mean_std_dim=cfg.get("mean_std_dim"),
            rope_theta=float(rope.get("theta_base", 10000.0)),
            rope_max_time=rope["max_time"],
            rope_max_height=rope["max_height"],
            rope_max_width=rope["max_width"],
            rope_one_dim_max_time=rope.get("one_dim_max_time") or rope["max_time"],
            theia=TheiaConfig.from_original(cfg.get("feature_extractor") or {}),
            **kw,
        )

    @classmethod
    def from_build_overrides(cls, overrides: Mapping[str, Any], **kw) -> "TokenizerConfig":
        """`build_tokenizer()` with the diffusion fixtures' `tokenizer_build_tokenizer_overrides`
        applied (sizes only; everything else as released)."""
        unknown = set(overrides) - _OVERRIDE_FIELDS.keys() - _IGNORED_OVERRIDES
        if unknown:
            raise ValueError(f"unknown build_tokenizer override(s): {sorted(unknown)}")
        fields = {_OVERRIDE_FIELDS[k]: v for k, v in overrides.items() if k in _OVERRIDE_FIELDS}
        if "image_size" in fields:
            fields["image_size"] = tuple(fields["image_size"])
        full = cls.full()
        channels = fields.get("image_channels", full.image_channels)
        image_size = fields.get("image_size", full.image_size)
        fields.setdefault("output_channels", channels)
        fields.setdefault("mean_std_dim", channels)
        fields.setdefault("rope_max_height", image_size[0])
        fields.setdefault("rope_max_width", image_size[1])
        fields.setdefault("theia", dataclasses.replace(full.theia, output_shape=image_size))
        return dataclasses.replace(full, **{**fields, **kw})


_OVERRIDE_FIELDS = {
    "width": "width",
    "num_layers": "num_layers",
    "num_heads": "num_heads",
    "image_channels": "image_channels",
    "token_size": "token_size",
    "image_size": "image_size",
    "temporal_size": "temporal_size",
    "num_latent_tokens": "num_latent_tokens",
    "PFrame_tokens": "pframe_tokens",
    "codebook_size": "codebook_size",
    "codebook_dim": "codebook_dim",
}


def _norm(v):
    """Lists and tuples compare equal; drop fiddle's target names."""
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items() if k != "__target__"}
    return v


def _check_supported(block: Mapping[str, Any], name: str, mask_type: str) -> None:
    problems = []
    if not str(block.get("positional_embedding_type", "")).endswith("ROPE_3D"):
        problems.append(f"positional_embedding_type {block.get('positional_embedding_type')} (only ROPE_3D)")
    if not str(block.get("attention_mask_type", "")).endswith(mask_type):
        problems.append(f"attention_mask_type {block.get('attention_mask_type')} (only {mask_type})")
    for flag in ("use_cls_token", "qk_norm", "causal", "code_drop"):
        if block.get(flag):
            problems.append(f"{flag}=True")
    if problems:
        raise ValueError(f"unsupported {name} config: {'; '.join(problems)}")


@dataclasses.dataclass(frozen=True)
class TokenizerTrainConfig:
    """Training of the semantic tokenizer: VideoVQ's loss and its VectorQuantize in train mode
    (vector_quantize_pytorch 1.19.2 defaults, as released and in the paper).

    total = recon_loss_weight · MSE(decoded, features) + commit_loss_weight · commitment_weight ·
    MSE(code, projected); the codebook is EMA state (see codebook.py).
    """

    model: TokenizerConfig = TokenizerConfig(theia=None)
    recon_loss_weight: float = 1.0
    commit_loss_weight: float = 1.0
    commitment_weight: float = 1.0  # VectorQuantize's own factor on its commitment MSE
    decay: float = 0.8
    eps: float = 1e-5
    threshold_ema_dead_code: float = 2.0  # also the cluster size a replaced code restarts with
    kmeans_init: bool = True
    kmeans_iters: int = 10
    rotation_trick: bool = True  # False: plain straight-through gradient
    normalize: bool = False  # features → (f − mean)/(std + 1e-8) by model_state's mean/std

    def __post_init__(self):
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {self.decay}")
        if self.kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be ≥ 1, got {self.kmeans_iters}")
        if self.normalize and self.model.mean_std_dim != self.model.image_channels:
            raise ValueError(f"normalize needs mean_std_dim == image_channels ({self.model.image_channels}), "
                             f"got {self.model.mean_std_dim}")

    @classmethod
    def tiny(cls, **kw) -> "TokenizerTrainConfig":
        """The public fixtures' sizes, no Theia (training reads stored features)."""
        return cls(model=TokenizerConfig.tiny(theia=None), **kw)

    @classmethod
    def from_original(cls, cfg: Mapping[str, Any], **kw) -> "TokenizerTrainConfig":
        """From the nested `build_tokenizer()` config of a training case (meta.json `config`);
        VectorQuantize defaults are read from the quantizer block or its `__defaults_that_matter__`."""
        vq = dict(cfg["quantizer"])
        vq = {**vq.pop("__defaults_that_matter__", {}), **vq}
        unsupported = {"use_cosine_sim": True, "stochastic_sample_codes": True, "learnable_codebook": True,
                       "ema_update": False}
        bad = [f"{k}={vq[k]}" for k, v in unsupported.items() if k in vq and bool(vq[k]) == v]
        if vq.get("heads", 1) != 1:
            bad.append(f"heads={vq['heads']}")
        if bad:
            raise ValueError(f"unsupported quantizer training setting(s): {', '.join(bad)}")
        return cls(
            model=TokenizerConfig.from_original(cfg, **kw),
            recon_loss_weight=float(cfg.get("recon_loss_weight", 1.0)),
            commit_loss_weight=float(cfg.get("commit_loss_weight", 1.0)),
            commitment_weight=float(vq.get("commitment_weight", 1.0)),
            decay=float(vq.get("decay", 0.8)),
            eps=float(vq.get("eps", 1e-5)),
            threshold_ema_dead_code=float(vq.get("threshold_ema_dead_code", 0.0)),
            kmeans_init=bool(vq.get("kmeans_init", False)),
            kmeans_iters=int(vq.get("kmeans_iters", 10)),
            rotation_trick=bool(vq.get("rotation_trick", True)),
            normalize=cfg.get("mean_std_path") is not None,
        )
