"""Configuration of the semantic video tokenizer (VideoVQ) and of its Theia feature extractor."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax.numpy as jnp


def num_codes(num_frames: int, iframe_tokens: int, pframe_tokens: int, segment_length: int) -> int:
    """Codes of a clip of `num_frames` semantic frames in groups of `segment_length`: per group of f
    frames I + (f−1)·P. The one formula: a tokenizer clip is one group (segment_length = its frames),
    the LM's sequence may hold several."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int (semantic frames), got {num_frames!r}")
    groups = -(-num_frames // segment_length)
    return groups * iframe_tokens + (num_frames - groups) * pframe_tokens


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
    attention: str = "xla"  # nn.attention.ATTENTION, chosen by `runtime`

    @property
    def table_grid(self) -> int:
        return self.image_size // self.patch_size


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
    attention: str = "xla"  # nn.attention.ATTENTION, chosen by `runtime`
    # training: "none" or a key of nn.dense.REMAT_POLICIES for the scanned encoder/decoder layers (a clip
    # of 13 frames is 18,768 tokens: ~45 GB of saved activations per example without remat)
    remat: str = "none"
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
        """Latent length of a clip of `num_frames` frames, one group whatever its length: I + (T−1)·P."""
        self.check_num_frames(num_frames)
        return num_codes(num_frames, self.iframe_tokens, self.pframe_tokens, segment_length=num_frames)

    def seq_len(self, num_frames: int) -> int:
        return num_frames * self.tokens_per_frame + self.num_codes(num_frames)

    def check_num_frames(self, num_frames: int) -> None:
        if not isinstance(num_frames, numbers.Integral) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if num_frames > self.rope_max_time:
            raise ValueError(f"num_frames {num_frames} exceeds the 3D RoPE table's max_time {self.rope_max_time}")
        latent = num_codes(num_frames, self.iframe_tokens, self.pframe_tokens, segment_length=num_frames)
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
