"""The original's VAE configuration → VAEConfig."""

from __future__ import annotations

from landiff_jax.vae.config import COGVIDEOX_SCALE_FACTOR, VAEConfig


def vae_config(cfg: dict, **overrides) -> VAEConfig:
    """From the original's arguments: a fixture's `config` (with `encoder_config` /
    `decoder_config` / `scale_factor`), a `first_stage_config` yaml block, or its `params`."""
    if "first_stage_config" in cfg and "encoder_config" not in cfg:
        cfg = cfg["first_stage_config"]
    params = cfg.get("params", cfg)
    enc = params["encoder_config"]
    dec = params["decoder_config"]
    enc, dec = enc.get("params", enc), dec.get("params", dec)
    shared = ("ch", "ch_mult", "num_res_blocks", "z_channels")
    diff = [k for k in shared if enc.get(k) != dec.get(k)]
    if diff:
        raise ValueError(f"encoder_config and decoder_config differ in {diff}; this VAE needs them equal")
    if not enc.get("double_z", True):
        raise ValueError("encoder_config.double_z=False is not supported (the posterior needs mean and logvar)")
    if enc.get("attn_resolutions") or dec.get("attn_resolutions"):
        raise ValueError("attn_resolutions must be empty: the CogVideoX VAE has no attention")
    if dec.get("add_conv", False):
        raise ValueError("decoder_config.add_conv=True is not supported (the released VAE has add_conv=False)")
    tct = enc.get("temporal_compress_times", 4)
    if dec.get("temporal_compress_times", 4) != tct:
        raise ValueError("encoder_config and decoder_config differ in temporal_compress_times")
    kwargs = dict(
        ch=enc["ch"],
        ch_mult=tuple(enc["ch_mult"]),
        num_res_blocks=enc["num_res_blocks"],
        z_channels=enc["z_channels"],
        in_channels=enc.get("in_channels", 3),
        out_ch=dec.get("out_ch", 3),
        temporal_compress_times=tct,
        scale_factor=float(cfg.get("scale_factor", COGVIDEOX_SCALE_FACTOR)),
    )
    kwargs.update(overrides)
    return VAEConfig(**kwargs)
