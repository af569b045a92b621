"""The LM's token layout: special ids, the prefix, the frame groups, and what each sampled
position may hold. Pure functions of a few integers (numpy / Python only).

A row is `[BOS][micro × m][text × n][SOI] codes... [EOS]`. The video part, starting at the
first START_OF_IFrame, is a sequence of groups of `segment_length` frames: I-frame codes and
END_OF_IFrame, then START_OF_PFrame / P-frame codes / END_OF_PFrame per P-frame; every group
after the first opens with its own START_OF_IFrame; a final EOS closes the row. The last
group may be partial (fewer P-frames).

Sampling predicts one position per step. Structural positions are *forced*: whatever is
drawn there is replaced by the structural token. Some steps are *constrained*: the draw is
restricted to special tokens (START_OF_IFrame of later groups, every START_OF_PFrame, and in
groups after the first the positions where EOS may follow a frame).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from landiff_jax.lm.config import NUM_SPECIALS
from landiff_jax.tokenizer.config import num_codes  # noqa: F401  (the one formula; lm.num_codes)

BOS, FEATURE, CODE, EOS = "BOS", "feature", "code", "EOS"
SOI, EOI, SOP, EOP = "START_OF_IFrame", "END_OF_IFrame", "START_OF_PFrame", "END_OF_PFrame"
STRUCTURAL = (SOI, EOI, SOP, EOP, EOS)
IGNORE_TOKEN = -100  # token id of feature-only positions (micro / text conditions)


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Ids 0..K-1 are visual codes, then EOS=K, BOS, SOI, EOI, SOP, EOP, PAD."""

    codebook_size: int

    @property
    def ids(self) -> dict[str, int]:
        k = self.codebook_size
        return {EOS: k, BOS: k + 1, SOI: k + 2, EOI: k + 3, SOP: k + 4, EOP: k + 5, "PAD": k + 6}

    @property
    def size(self) -> int:
        return self.codebook_size + NUM_SPECIALS

    def __getitem__(self, kind: str) -> int:
        return self.ids[kind]


def check_num_frames(num_frames) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int (semantic frames), got {num_frames!r}")
    return int(num_frames)


def video_kinds(num_frames: int, iframe_tokens: int, pframe_tokens: int, segment_length: int) -> tuple[str, ...]:
    """Kinds of the positions from the first START_OF_IFrame to the final EOS (inclusive)."""
    num_frames = check_num_frames(num_frames)
    kinds: list[str] = []
    for start in range(0, num_frames, segment_length):
        frames = min(segment_length, num_frames - start)
        kinds += [SOI] + [CODE] * iframe_tokens + [EOI]
        kinds += ([SOP] + [CODE] * pframe_tokens + [EOP]) * (frames - 1)
    return tuple(kinds + [EOS])


@dataclasses.dataclass(frozen=True)
class FrameLayout:
    """The sampled part of a row, relative to the first START_OF_IFrame (video offset 0).

    Step s predicts video offset `first_step + s`. Per-step arrays (length `steps`):
    `forced` (token id, or -1 where the draw is kept), `allow` [steps, 3] (may the draw be
    START_OF_IFrame / START_OF_PFrame / EOS; a row of False means an unconstrained step), and
    `code_steps` (the steps whose draw is a returned code, in order).
    """

    vocab: Vocab
    kinds: tuple[str, ...]  # video part
    first_step: int
    forced: np.ndarray
    allow: np.ndarray
    code_steps: np.ndarray
    iframe_tokens: int

    @property
    def steps(self) -> int:
        return len(self.kinds) - self.first_step

    @property
    def constrained(self) -> np.ndarray:
        return self.allow.any(axis=1)

    @property
    def prefix_video_tokens(self) -> tuple[int, ...]:
        """Ids of the video positions inside the prefix, CODE for ground-truth I-frame codes."""
        return tuple(-1 if k == CODE else self.vocab[k] for k in self.kinds[: self.first_step])

    def allowed_mask(self) -> np.ndarray:
        """[steps, vocab] bool: the allowed set per step (all True at unconstrained steps)."""
        mask = np.zeros((self.steps, self.vocab.size), bool)
        for col, kind in enumerate((SOI, SOP, EOS)):
            mask[:, self.vocab[kind]] = self.allow[:, col]
        mask[~self.constrained] = True
        return mask


def frame_layout(
    codebook_size: int, iframe_tokens: int, pframe_tokens: int, segment_length: int, num_frames: int,
    *, gt_first_frame: bool = False,
) -> FrameLayout:
    vocab = Vocab(codebook_size)
    kinds = video_kinds(num_frames, iframe_tokens, pframe_tokens, segment_length)
    # The original's prefix with a ground-truth first frame runs through the position after EOI.
    first_step = iframe_tokens + 3 if gt_first_frame else 1
    if first_step >= len(kinds):
        raise ValueError(f"num_frames={num_frames} leaves nothing to sample after the ground-truth first frame")
    allow = np.zeros((len(kinds), 3), bool)
    group = -1
    for pos, kind in enumerate(kinds):
        group += kind == SOI
        allow[pos, 0] |= kind == SOI and pos > 0
        allow[pos, 1] |= kind == SOP
        # in groups after the first, EOS may follow any I- or P-frame
        if group > 0 and kind in (EOI, EOP) and pos + 1 < len(kinds):
            allow[pos + 1, 2] = True
    forced = np.array([vocab[k] if k in STRUCTURAL else -1 for k in kinds], np.int32)
    sampled = slice(first_step, None)
    code_steps = np.flatnonzero(np.array(kinds[sampled]) == CODE).astype(np.int32)
    return FrameLayout(vocab, kinds, first_step, forced[sampled], allow[sampled], code_steps, iframe_tokens)


def prefix_kinds(num_text: int, num_micro: int) -> tuple[str, ...]:
    """Kinds before the first START_OF_IFrame: BOS, micro conditions, text rows."""
    if num_text < 1:
        raise ValueError("the text condition needs at least one token")
    return (BOS,) + (FEATURE,) * (num_micro + num_text)


def position_kinds(layout: FrameLayout, num_text: int, num_micro: int) -> tuple[str, ...]:
    """Kind of every position 0..full_len-1 of a row (the fixtures' `position_kinds`)."""
    return prefix_kinds(num_text, num_micro) + layout.kinds


def prefix_len(layout: FrameLayout, num_text: int, num_micro: int) -> int:
    return len(prefix_kinds(num_text, num_micro)) + layout.first_step


def position_tokens(layout: FrameLayout, num_text: int, num_micro: int, generated, first_frame_codes=None) -> np.ndarray:
    """Token id at every position of one row as the model sees it (IGNORE_TOKEN at features).

    generated: [steps] ids fed back per step (forced specials applied); the final EOS
    is included although it is never fed.
    """
    head = [layout.vocab[BOS]] + [IGNORE_TOKEN] * (num_micro + num_text)
    video_prefix = list(layout.prefix_video_tokens)
    if first_frame_codes is not None:
        codes = iter(np.asarray(first_frame_codes).tolist())
        video_prefix = [next(codes) if t == -1 else t for t in video_prefix]
    return np.asarray(head + video_prefix + list(np.asarray(generated).tolist()), np.int64)
