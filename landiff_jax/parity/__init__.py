"""Parity against the original: every fixture case runs through the project's own converters
and code paths, and every expected array is compared (`tools/parity.py DIR...`).

`RUNNERS` maps meta.json's `component` to the function that runs such a case,
`run(case_dir, meta) -> list[Check]`; one module per component family holds them.
"""

from landiff_jax.parity import (  # noqa: E402  (they use the harness)
    diffusion,
    diffusion_train,
    e2e,
    lm,
    lm_train,
    text,
    tokenizer,
    tokenizer_train,
    vae,
)
from landiff_jax.parity.harness import (
    EXACT,
    Check,
    Tolerance,
    channels_first,
    channels_last,
    compare,
    find_cases,
    from_ncthw,
    load_case,
    run_all,
    run_case,
    to_ncthw,
    tolerance_for,
)

RUNNERS = {
    "t5": text.run,
    "theia": tokenizer.run_theia,
    "tokenizer": tokenizer.run_tokenizer,
    "tokenizer_train": tokenizer_train.run,
    "lm": lm.run,
    "lm_train": lm_train.run,
    "dit": diffusion.run_dit,
    "sampler": diffusion.run_sampler,
    "diffusion_train": diffusion_train.run,
    "vae": vae.run,
    "e2e": e2e.run,
}


def main(roots) -> int:
    return run_all(roots, RUNNERS)


__all__ = [
    "EXACT",
    "RUNNERS",
    "Check",
    "Tolerance",
    "channels_first",
    "channels_last",
    "compare",
    "find_cases",
    "from_ncthw",
    "load_case",
    "main",
    "run_all",
    "run_case",
    "to_ncthw",
    "tolerance_for",
]
