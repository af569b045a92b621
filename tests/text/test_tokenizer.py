"""The sentencepiece T5 tokenizer against the ids of transformers' slow T5Tokenizer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from landiff_jax.convert import CheckpointError
from landiff_jax.text.tokenizer import LM_MAX_LENGTH, T5TextTokenizer, TruncationWarning

# ids of transformers' slow T5Tokenizer (legacy) on the fixtures' spiece.model: whitespace runs,
# sentinels (which eat the spaces around them), special tokens inside text, unknown characters.
# Computed with transformers 5.23, whose code path for these inputs is 4.47's.
HF_IDS = {
    "  lead  spaces   and\ttabs\n": [3, 65, 23, 22, 95, 93, 50, 7, 33, 107, 23, 215, 4, 1],
    "x<extra_id_0>y": [3, 214, 323, 3, 9, 1],
    "a <extra_id_12> b </s> c<pad>d": [7, 311, 91, 1, 40, 0, 83, 1],
    "": [1],
    "üñí 日本 ﬁ ①": [3, 2, 3, 2, 130, 3, 2, 1],
    "A\u00a0B": [8, 3, 2, 1],
    "<unk>x": [2, 3, 214, 1],
    "<extra_id_1><extra_id_10>": [322, 313, 1],
    # 4.47 does not append a second </s> when the text already ends with one (5.x does)
    "end </s>": [3, 11, 33, 1],
}


@pytest.fixture(scope="module")
def t5_dir(fixtures_dir):
    return fixtures_dir / "t5" / "lm_longest_left" / "t5"


@pytest.fixture(scope="module")
def tokenizer(t5_dir):
    return T5TextTokenizer(t5_dir)


def test_matches_hf_slow_tokenizer(tokenizer):
    for text, ids in HF_IDS.items():
        assert tokenizer.tokenize([text], LM_MAX_LENGTH)[0] == ids, repr(text)


def test_lm_padding_left_with_mask(tokenizer):
    ids, mask = tokenizer.encode_lm(["Waves at sunset.", ""])
    assert ids.shape == mask.shape == (2, 10) and ids.dtype == np.int32
    assert ids[0].tolist() == [3, 210, 23, 57, 4, 7, 14, 149, 6, 1]
    assert ids[1].tolist() == [0] * 9 + [1] and mask[1].tolist() == [0] * 9 + [1]
    assert mask[0].all()


def test_lm_min_length_pads_short_prompts_and_keeps_long_ones(tokenizer):
    """min_length (the demo's one compiled LM for all short prompts): more left padding, never truncation."""
    ids, mask = tokenizer.encode_lm(["Waves at sunset."], min_length=16)
    assert ids.shape == mask.shape == (1, 16)
    assert ids[0].tolist() == [0] * 6 + [3, 210, 23, 57, 4, 7, 14, 149, 6, 1]
    assert mask[0].tolist() == [0] * 6 + [1] * 10
    ids, mask = tokenizer.encode_lm(["Waves at sunset."], min_length=4)
    assert ids[0].tolist() == [3, 210, 23, 57, 4, 7, 14, 149, 6, 1] and mask.all()


def test_diffusion_padding_right(tokenizer):
    ids = tokenizer.encode_diffusion(["Waves at sunset."], 12)
    assert ids.tolist() == [[3, 210, 23, 57, 4, 7, 14, 149, 6, 1, 0, 0]]


def test_truncation_warns_and_keeps_eos_last(tokenizer):
    with pytest.warns(TruncationWarning, match="truncated to 5"):
        ids = tokenizer.encode_diffusion(["Waves at sunset.", "A fox."], 5)
    assert ids[0].tolist() == [3, 210, 23, 57, 1]
    with pytest.warns(TruncationWarning, match=f"truncated to {LM_MAX_LENGTH}"):
        ids, mask = tokenizer.encode_lm(["fox " * 600])
    assert ids.shape == (1, LM_MAX_LENGTH) and mask.all() and ids[0, -1] == tokenizer.eos_id


def test_missing_model_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path / "spiece.model")):
        T5TextTokenizer(tmp_path)


def test_non_legacy_refused(tmp_path, t5_dir):
    shutil.copy(t5_dir / "spiece.model", tmp_path / "spiece.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"legacy": False}))
    with pytest.raises(ValueError, match="legacy=false"):
        T5TextTokenizer(tmp_path)


def test_vocab_larger_than_model_refused(tokenizer):
    from landiff_jax.text.config import T5Config
    from landiff_jax.text.encoders import encode_for_lm

    with pytest.raises(ValueError, match="324 ids"):
        encode_for_lm(tokenizer, {}, T5Config.tiny(vocab_size=100), ["a fox"])
