"""tools/generate.py's help and file names (run in subprocesses: the tool defines absl flags)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_file_names_cut_at_words_and_hash_non_latin_prompts():
    prompts = ["A small red fox walks slowly across a quiet forest, cinematic lighting.", "雪の中を歩く赤い狐",
               "雪の中を歩く白い狐", "Café crème, 1920s Paris", "Antidisestablishmentarianism" * 3]
    code = f"import json; from tools.generate import output_names; print(json.dumps(output_names({prompts!r})))"
    names = json.loads(_python(code))
    assert names[0] == "000_a_small_red_fox_walks_slowly_across_a_quiet"  # "forest" would pass 48 characters
    assert re.fullmatch(r"001_[0-9a-f]{10}", names[1]) and re.fullmatch(r"002_[0-9a-f]{10}", names[2])
    assert names[1][4:] != names[2][4:]
    assert names[3] == "003_cafe_creme_1920s_paris"
    assert names[4] == "004_" + ("antidisestablishmentarianism" * 3)[:48]  # one long word: cut inside it
    assert json.loads(_python(code)) == names  # the hash is stable across runs


def test_help_shows_the_chosen_presets_defaults():
    def help_text(*args):
        result = subprocess.run([sys.executable, "tools/generate.py", *args, "--help"], cwd=REPO, env=ENV,
                                capture_output=True, text=True, timeout=300)
        return re.sub(r"\s+", " ", result.stdout)

    tiny = help_text("--preset", "tiny", "--random_weights")
    assert "--steps: diffusion steps (default for tiny: 4)" in tiny
    assert "--num_frames: video frames, one of [9] or, chunk by chunk, 17, 25, 33, ... (default for tiny: 9)" in tiny
    assert "--fps" in tiny and "--[no]quiet" in tiny
    full = help_text("--preset=full", "--random_weights")
    assert "--steps: diffusion steps (default for full: 50)" in full
    assert "or, chunk by chunk, 73, 97, 121, ... (default for full: 49)" in full
    assert "--dit_guidance: diffusion dynamic CFG scale (default for full: 6)" in full
