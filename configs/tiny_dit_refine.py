"""Stage 4b of the tiny LanDiff (configs/tiny_landiff.py): a refining phase of the base DiT, run
twice by tools/train_tiny.py (warm restarts), each from the previous EMA weights (first those of
stage 4, configs/tiny_dit.py), with a fresh optimizer at a lower peak learning rate. Shapes are
the finest detail the DiT draws (a 16-pixel object is 2×2 of its tokens) and the last it learns:
the first phase ends with colour, motion and background right and shapes rounded. bfloat16 compute
(float32 master weights), the scan unrolled as in stage 4: ≈ 19 ms per update of 256 on one H200,
~3 min per round with the compile. `init_from` is the converted checkpoint holding the previous DiT
(tools/train_tiny.py assembles it); `model.scale_factor` as in stage 4.

  python tools/train.py --config configs/tiny_dit_refine.py --workdir runs/tiny/dit_refine data.path=DIR \
      init_from=CKPT model.scale_factor=X
"""

import dataclasses
from pathlib import Path

from landiff_jax import config_file

STAGE4 = config_file.load(Path(__file__).with_name("tiny_dit.py"))


def get_config():
    return dataclasses.replace(
        STAGE4,
        steps=6000,
        compute_dtype="bfloat16",
        optimizer=dataclasses.replace(STAGE4.optimizer, learning_rate=3e-4, warmup_steps=200),
        init_from="runs/tiny/base_checkpoint",
    )
