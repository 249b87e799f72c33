"""Rows as tensors, and decoded ids back to text, without Python loops over rows.

`RowBatch` holds what `model.request.Row` holds, one tensor per field: built from request-like
groups (a prefix, a count and its knobs; row i of a group seeded `row_seed(seed, i)`, exactly as
`make_rows` seeds it) or from Row objects. `NameText` turns a block of ids into newline-ended
names with a handful of tensor ops and one decode of the whole block (UTF-32), on the ids'
device; the per-row Python work of `Vocab.decode` is what it replaces.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from data.vocab import Vocab
from model.noise import MAX_SEED, row_seeds
from model.request import Row


@dataclass
class RowBatch:
    """B rows on the host. prefix is padded with 0 past each row's prefix_len (never read)."""

    prefix: torch.Tensor  # int64 [B, P], P >= 1
    prefix_len: torch.Tensor  # int64 [B]
    max_length: torch.Tensor  # int64 [B], characters, prefix included
    temperature: torch.Tensor  # float64 [B], 0 = greedy
    top_k: torch.Tensor  # int64 [B], 0 = all symbols
    seed: torch.Tensor  # int64 [B], the row's own noise seed
    name_length: torch.Tensor  # int64 [B], characters already in the name (a session continuing it)

    def __len__(self) -> int:
        return self.prefix_len.shape[0]

    @classmethod
    def from_groups(cls, prefixes: Sequence[Sequence[int]], nums: Sequence[int], max_lengths: Sequence[int],
                    temperatures: Sequence[float], top_ks: Sequence[int], seeds: Sequence[int], *,
                    first_index: int = 0, name_lengths: Sequence[int] | None = None) -> RowBatch:
        """Group g gives nums[g] rows; its row i (counting from first_index) has seed
        row_seed(seeds[g], i): the rows `make_rows` gives for each group, concatenated."""
        nums_t = torch.tensor(list(nums), dtype=torch.long)
        if (nums_t < 0).any():
            raise ValueError(f"every group's count must be >= 0, got {nums_t.min().item()}")
        group = torch.repeat_interleave(torch.arange(len(nums_t)), nums_t)  # each row's group
        starts = torch.cumsum(nums_t, 0) - nums_t
        index = torch.arange(len(group), dtype=torch.long) - starts[group] + first_index
        if len(index) and index.max().item() >= 2**31:
            raise ValueError(f"row index {index.max().item()} is too large (at most 2**31 - 1)")
        seeds_t = _checked(torch.tensor(list(seeds), dtype=torch.long), "seed", 0, MAX_SEED)
        lengths = torch.tensor([len(p) for p in prefixes], dtype=torch.long)
        return cls(
            prefix=_pad_ragged(prefixes, lengths)[group],
            prefix_len=lengths[group],
            max_length=torch.tensor(list(max_lengths), dtype=torch.long)[group],
            temperature=torch.tensor(list(temperatures), dtype=torch.float64)[group],
            top_k=torch.tensor(list(top_ks), dtype=torch.long)[group],
            seed=row_seeds(seeds_t[group], index),
            name_length=(torch.zeros(len(nums_t), dtype=torch.long) if name_lengths is None
                         else torch.tensor(list(name_lengths), dtype=torch.long))[group],
        ).checked()

    @classmethod
    def from_rows(cls, rows: Sequence[Row], name_lengths: Sequence[int] | None = None) -> RowBatch:
        """The rows as they are (their seeds already final)."""
        lengths = torch.tensor([len(r.prefix) for r in rows], dtype=torch.long)
        return cls(
            prefix=_pad_ragged([r.prefix for r in rows], lengths),
            prefix_len=lengths,
            max_length=torch.tensor([r.max_length for r in rows], dtype=torch.long),
            temperature=torch.tensor([float(r.temperature) for r in rows], dtype=torch.float64),
            top_k=torch.tensor([r.top_k for r in rows], dtype=torch.long),
            seed=torch.tensor([r.seed for r in rows], dtype=torch.long),
            name_length=(torch.zeros(len(rows), dtype=torch.long) if name_lengths is None
                         else torch.tensor(list(name_lengths), dtype=torch.long)),
        ).checked()

    def checked(self) -> RowBatch:
        """Row's rules, for all rows at once; the error names the field and the first bad row."""
        _first_bad(self.max_length < self.prefix_len.clamp_min(1), "max_length",
                   "is shorter than the prefix or < 1", self.max_length)
        _first_bad(~(self.temperature >= 0) | ~torch.isfinite(self.temperature), "temperature",
                   "must be a finite number >= 0", self.temperature)
        _first_bad(self.top_k < 0, "top_k", "must be >= 0", self.top_k)
        _checked(self.seed, "seed", 0, MAX_SEED)
        return self

    def rows(self, lo: int, hi: int) -> RowBatch:
        return RowBatch(*(getattr(self, f)[lo:hi] for f in self.__dataclass_fields__))


def _pad_ragged(seqs: Sequence[Sequence[int]], lengths: torch.Tensor) -> torch.Tensor:
    """[len(seqs), max(1, longest)] int64, row i holding seqs[i] then zeros: one scatter."""
    out = torch.zeros(len(seqs), max(1, int(lengths.max()) if len(seqs) else 1), dtype=torch.long)
    flat = [i for s in seqs for i in s]
    if flat:
        out[torch.arange(out.shape[1]) < lengths.unsqueeze(1)] = torch.tensor(flat, dtype=torch.long)
    return out


def _first_bad(bad: torch.Tensor, field: str, rule: str, values: torch.Tensor) -> None:
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"{field} {rule}: row {row} has {values[row].item()}")


def _checked(values: torch.Tensor, field: str, lo: int, hi: int) -> torch.Tensor:
    _first_bad((values < lo) | (values > hi), field, f"must be in [{lo}, {hi}]", values)
    return values


_UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"  # the host's int32 layout


class NameText:
    """Decoded ids [B, T] -> "name\\n" per row, vectorised (see the module docstring).

    Each symbol id maps to its code point (the boundary/special symbols to 0); everything from a
    row's first end token on becomes 0 as well, a newline ends each row, and the block is
    decoded as UTF-32 once, with the zeros removed. Gives exactly `Vocab.decode` of each row."""

    def __init__(self, vocab: Vocab):
        chars = vocab.characters
        bad = [c for c in chars if c in "\0\n"]
        if bad:
            raise ValueError(f"the vocabulary holds {bad!r}, which cannot appear inside a name line")
        self.eos_id = vocab.eos_id
        self._codes = torch.tensor([0 if i in (vocab.bos_id, vocab.eos_id) else ord(s)
                                    for i, s in enumerate(vocab.symbols)], dtype=torch.int32)
        self._on: dict[torch.device, torch.Tensor] = {}

    def codes(self, device: torch.device) -> torch.Tensor:
        if device not in self._on:
            self._on[device] = self._codes.to(device)
        return self._on[device]

    def text(self, ids: torch.Tensor, skip: torch.Tensor | None = None) -> str:
        """Names of the rows of `ids` (int64 [B, T], any device), each followed by a newline.
        skip [B] (optional): leave out each row's first skip[i] symbols (e.g. a forced prefix)."""
        if ids.shape[0] == 0:
            return ""
        live = (ids != self.eos_id).cumprod(dim=1).to(torch.int32)  # 0 from the first end token on
        codes = self.codes(ids.device)[ids] * live
        if skip is not None:
            codes = codes.masked_fill(torch.arange(ids.shape[1], device=ids.device) < skip.unsqueeze(1), 0)
        newline = torch.full((ids.shape[0], 1), ord("\n"), dtype=torch.int32, device=ids.device)
        block = torch.cat([codes, newline], dim=1).cpu().contiguous()  # the one copy to the host
        raw = ctypes.string_at(block.data_ptr(), block.numel() * 4)  # torch-only, no numpy needed
        return raw.decode(_UTF32).replace("\0", "")

    def names(self, ids: torch.Tensor, skip: torch.Tensor | None = None) -> list[str]:
        return self.text(ids, skip).split("\n")[:-1]


def ceil_to(n: int, multiple: int) -> int:
    return multiple * math.ceil(n / multiple)
