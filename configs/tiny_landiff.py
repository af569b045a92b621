"""The tiny LanDiff that `tools/train_tiny.py` trains from scratch on the synthetic world
(landiff_jax/data/synthetic.py): 9 frames of 64×96 from 3 semantic / latent frames, the same
frame rule as full size (video frames = 4·(T − 1) + 1, T odd).

Sizes (capacity for the world's 315 captions, trainable in ≤ 30 min on one H200):
- text encoders: two frozen RANDOM T5 encoders (d 64, 2 layers) over byte-level ids (a UTF-8
  byte + 3, vocab 384): a fixed random function of the caption's bytes; the LM and the DiT
  learn to read it. Nothing here needs a pretrained vocabulary: the captions are a small grammar.
- semantic feature extractor: a frozen RANDOM Theia-architecture ViT (d 64, 2 layers, patch 16
  → a 4×6 grid per frame). A random ViT is a fixed, information-keeping map of each 16×16 patch
  (colour and coverage, plus some context); trained Theia weights exist only at 224², and
  training one here would need the teacher models Theia distils (DINOv2, CLIP, ViT, ...).
- semantic tokenizer (trained): width 128, 3 layers, codebook 256 × 8, I-frame 16 tokens,
  P-frame 8 tokens (I + 2·P = 32 codes per clip), features of 64 channels.
- LM (trained): hidden 192, 4 layers, 6 heads, MLP 512, the tokenizer's codebook and layout.
- DiT (trained as a base text → latent model, then a control branch on it): hidden 192,
  6 layers (control branch: 3), 6 heads, patch 2 → 8×12 patches × 3 frames, 96 text rows
  (hidden 160 drew blurrier shapes: BUILD_NOTES, fourth training).
- VAE (trained): ch 32, ch_mult (1, 2, 2), 1 res block, 8 latent channels, ×4 space, ×4 time
  (latents 3×16×24). At ×8 (2×2 latents per object) the VAE learned the backgrounds and lost the
  object; at ×4 a 16-pixel object spans 4×4 latents.
14.2M parameters in all (28 MB in bfloat16; the shipped checkpoint is 22 MB on disk).
  `vae.scale_factor` is a placeholder: train_tiny.py measures 1 / std of the training latents
  after the VAE stage and records the measured value in the shipped checkpoint's config.
- sampler: 20 steps (the released 50 are not needed at this size; the CPU demo stays fast).

  python tools/train_tiny.py --workdir runs/tiny
"""

from landiff_jax.config import LanDiffConfig
from landiff_jax.diffusion.config import DiTConfig, SamplerConfig, SemanticCondConfig
from landiff_jax.lm.config import LMConfig
from landiff_jax.text.config import T5Config
from landiff_jax.tokenizer.config import TheiaConfig, TokenizerConfig
from landiff_jax.vae.config import VAEConfig

FRAMES = 3  # semantic / latent frames (9 video frames)
HEIGHT, WIDTH = 64, 96
TEXT_LENGTH = 96  # T5 rows of the DiT (byte-level captions of the grammar are ≤ 70 bytes)


def get_config() -> LanDiffConfig:
    t5 = T5Config.tiny(d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2)
    tokenizer = TokenizerConfig(
        image_size=(4, 6), image_channels=64, width=128, num_layers=3, num_heads=4,
        num_latent_tokens=16 + (FRAMES - 1) * 8, token_size=32, temporal_size=FRAMES, pframe_tokens=8,
        output_channels=64, codebook_size=256, codebook_dim=8, mean_std_dim=64,
        rope_max_time=10, rope_max_height=4, rope_max_width=6, rope_one_dim_max_time=1000,
        theia=TheiaConfig(hidden_size=64, num_layers=2, num_heads=4, mlp_dim=128, patch_size=16,
                          image_size=64, output_shape=(4, 6)),
    )
    lm = LMConfig(
        codebook_size=tokenizer.codebook_size, iframe_tokens=tokenizer.iframe_tokens,
        pframe_tokens=tokenizer.pframe_tokens, segment_length=FRAMES, hidden=192, num_heads=6, num_layers=4,
        mlp_dim=512, max_len=512, text_dim=t5.d_model, micro_hidden=64, micro_freq_dim=32,
        text_drop_prob=0.1,
    )
    vae = VAEConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=8, scale_factor=1.0)
    dit = DiTConfig(
        hidden_size=192, num_heads=6, num_layers=6, control_layers=3, time_embed_dim=96,
        text_length=TEXT_LENGTH, text_hidden_size=t5.d_model, patch_size=2,
        in_channels=vae.z_channels, out_channels=vae.z_channels, latent_frames=FRAMES,
        latent_height=HEIGHT // vae.spatial_factor, latent_width=WIDTH // vae.spatial_factor,
        height_interpolation=1.0, width_interpolation=1.0,
        semantic=SemanticCondConfig(z_channels=tokenizer.output_channels, ch=64, ch_mult=(0.5, 1.0, 1.0),
                                    num_res_blocks=1, out_dim=32, target_dim=vae.z_channels),
    )
    return LanDiffConfig(t5, t5, tokenizer, lm, dit, SamplerConfig(num_steps=20, cfg_num_steps=20), vae).check()

