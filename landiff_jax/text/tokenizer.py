"""T5 tokenizer on sentencepiece, giving the ids of transformers' slow `T5Tokenizer` (legacy mode).

What that tokenizer does, and this reproduces:
- the text is first split on the added tokens (`<pad>`, `</s>`, `<unk>` and the `<extra_id_i>`
  sentinels); a sentinel also swallows the whitespace on both sides of it;
- every other piece is encoded by sentencepiece on its own (its normaliser collapses and trims
  whitespace and adds the leading '▁');
- truncation keeps `max_length − 1` ids, then `</s>` is appended unless the ids already end with it;
- `<extra_id_i>` has id `spiece_size − 1 + extra_ids − i`; pad is 0.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import sentencepiece as spm

from landiff_jax.convert import CheckpointError

# the LM side's (FlanT5XXL) max_length
LM_MAX_LENGTH = 512
PAD_ID = 0


class TruncationWarning(UserWarning):
    """A prompt had more tokens than the encoder's max_length and was cut."""


class T5TextTokenizer:
    def __init__(self, directory: str | Path):
        directory = Path(directory)
        model_file = directory / "spiece.model"
        if not model_file.is_file():
            raise CheckpointError(f"T5 tokenizer model not found: {model_file}")
        self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        options = _tokenizer_options(directory / "tokenizer_config.json")
        self.eos_id = self._sp.eos_id()
        if self._sp.pad_id() != PAD_ID or self.eos_id < 0:
            raise CheckpointError(f"{model_file}: expected pad id {PAD_ID} and an eos piece (T5 layout)")
        size, extra = self._sp.get_piece_size(), options["extra_ids"]
        # id of each added token; sentinels strip the whitespace around them
        self._added = {self._sp.id_to_piece(i): i for i in (PAD_ID, self.eos_id, self._sp.unk_id())}
        self._sentinels = {f"<extra_id_{i}>": size - 1 + extra - i for i in range(extra)}
        self._added.update(self._sentinels)
        longest_first = sorted(self._added, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")
        self.vocab_size = size + extra

    def ids(self, text: str) -> list[int]:
        """Token ids of one text, without `</s>`."""
        parts = self._split.split(text)  # odd indices are added tokens
        for i in range(1, len(parts), 2):
            if parts[i] in self._sentinels:
                parts[i - 1] = parts[i - 1].rstrip()
                parts[i + 1] = parts[i + 1].lstrip()
        out: list[int] = []
        for i, part in enumerate(parts):
            if i % 2:
                out.append(self._added[part])
            elif part:
                out.extend(self._sp.encode(part))
        return out

    def tokenize(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Ids of each text with `</s>` appended, truncated to `max_length` (with a warning)."""
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        out = []
        for n, text in enumerate(texts):
            ids = self.ids(text)
            if len(ids) + 1 > max_length:
                warnings.warn(
                    f"prompt {n} has {len(ids) + 1} T5 tokens; truncated to {max_length}: {text[:60]!r}...",
                    TruncationWarning,
                    stacklevel=3,
                )
                ids = ids[: max_length - 1]
            if not ids or ids[-1] != self.eos_id:
                ids = ids + [self.eos_id]
            out.append(ids)
        return out

    def encode_lm(self, texts: Sequence[str], pad_to: int | None = None,
                  min_length: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """LM side (Flan-T5): ids [b n] int32 left-padded to the longest (≤ 512), mask [b n] int32 (1 = token).
        pad_to: left-pad (and truncate) to exactly this length instead, for a fixed shape;
        min_length: left-pad to at least this length (one shape for all shorter prompts, longer
        ones kept whole). The encoder's states of the real tokens are those of the longest-padded
        batch (masked keys, relative positions unchanged)."""
        rows = self.tokenize(texts, LM_MAX_LENGTH if pad_to is None else pad_to)
        n = max(max(map(len, rows)), min_length) if pad_to is None else pad_to
        ids = np.full((len(rows), n), PAD_ID, np.int32)
        mask = np.zeros((len(rows), n), np.int32)
        for r, row in enumerate(rows):
            ids[r, n - len(row):] = row
            mask[r, n - len(row):] = 1
        return ids, mask

    def encode_diffusion(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        """Diffusion side (T5 v1.1): ids [b max_length] int32, right-padded with 0, truncated."""
        rows = self.tokenize(texts, max_length)
        ids = np.full((len(rows), max_length), PAD_ID, np.int32)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = row
        return ids


class ByteTokenizer(T5TextTokenizer):
    """Stand-in when no spiece.model is given: UTF-8 byte + 3 per token, `</s>` = 1, pad 0.
    Same padding and truncation as the T5 tokenizer; NOT T5's vocabulary."""

    def __init__(self):  # no sentencepiece model to load
        self.eos_id = 1
        self.vocab_size = 256 + 3

    def ids(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode("utf-8")]


def _tokenizer_options(config_file: Path) -> dict:
    """`extra_ids` (default 100) from tokenizer_config.json; refuses the non-legacy mode."""
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if config.get("legacy", True) is False:
        raise ValueError(f"{config_file}: legacy=false (prefix-space handling) is not supported")
    return {"extra_ids": int(config.get("extra_ids", 100))}
