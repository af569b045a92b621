"""Token layout: the fixtures' position kinds, and the structure for any number of frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from landiff_jax.lm import layout as L
from landiff_jax.lm.config import LMConfig


@pytest.mark.parametrize("case", ["one_group_cfg6p5", "two_groups_cfg4"])
def test_position_kinds_of_fixtures(fixtures_dir, case):
    meta = json.loads((fixtures_dir / "lm" / case / "meta.json").read_text())
    expected = meta["token_layout"]
    n = int(np.load(fixtures_dir / "lm" / case / "io.npz")["input_ids"].shape[1])
    lay = L.frame_layout(64, expected["Iframe_len"], expected["Pframe_len"], expected["segment_length"],
                         meta["sample_args"]["num_frames"])
    assert L.position_kinds(lay, n, 2) == tuple(expected["position_kinds"])
    assert L.prefix_len(lay, n, 2) == expected["prefix_len"]
    assert lay.steps == expected["steps"]
    assert lay.vocab.ids == {k: v for k, v in expected["vocab"].items() if k != "visual_range"}


@pytest.mark.parametrize("num_frames", [1, 2, 3, 4, 5, 7, 13, 14])
def test_groups_for_any_num_frames(num_frames):
    cfg = LMConfig.tiny()
    i, p, seg = cfg.iframe_tokens, cfg.pframe_tokens, cfg.segment_length
    lay = L.frame_layout(cfg.codebook_size, i, p, seg, num_frames)
    kinds = lay.kinds
    groups = -(-num_frames // seg)
    assert kinds.count(L.SOI) == groups and kinds.count(L.EOI) == groups
    assert kinds.count(L.SOP) == kinds.count(L.EOP) == num_frames - groups
    assert kinds[-1] == L.EOS and kinds.count(L.EOS) == 1
    assert len(lay.code_steps) == L.num_codes(num_frames, i, p, seg)
    # the original's length: one SOI + per group I + (f-1)P + 2f ... + EOS
    frames = [min(seg, num_frames - s) for s in range(0, num_frames, seg)]
    assert len(kinds) == sum(i + (f - 1) * p + 2 * f for f in frames) + 1
    # forced exactly at structural positions; code steps are free
    sampled = np.array(kinds[1:])
    assert np.array_equal(lay.forced >= 0, sampled != L.CODE)
    assert (lay.forced[lay.code_steps] == -1).all()
    # constrained: later SOIs, every SOP, and in later groups the position after each frame
    constrained = set(np.flatnonzero(lay.constrained))
    group_starts = [s - 1 for s, k in enumerate(kinds) if k == L.SOI and s > 0]
    assert {s for s, k in enumerate(sampled) if k in (L.SOI, L.SOP)} <= constrained
    if groups == 1:
        assert not lay.allow[:, 2].any()
    else:
        after_frames = {s + 1 for s, k in enumerate(sampled) if k in (L.EOI, L.EOP) and s > group_starts[0]}
        assert set(np.flatnonzero(lay.allow[:, 2])) == after_frames
    assert not lay.constrained[lay.code_steps].any()


def test_partial_last_group_ends_with_eos_after_its_iframe():
    lay = L.frame_layout(64, 6, 2, 3, 4)  # groups of 3 + 1 frames
    tail = lay.kinds[-9:]
    assert tail == (L.SOI,) + (L.CODE,) * 6 + (L.EOI, L.EOS)
    assert lay.allow[-1].tolist() == [False, False, True]  # EOS may follow the lone I-frame


def test_gt_first_frame_prefix():
    lay = L.frame_layout(64, 6, 2, 3, 3, gt_first_frame=True)
    assert lay.prefix_video_tokens == (66,) + (-1,) * 6 + (67, 68)
    assert lay.steps == len(lay.kinds) - 9
    assert len(lay.code_steps) == L.num_codes(3, 6, 2, 3) - 6


def test_bad_num_frames():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_frames"):
            L.frame_layout(64, 6, 2, 3, bad)
