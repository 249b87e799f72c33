"""Rows as tensors, and decoded ids back to text, without Python loops over rows.

`RowBatch` is a decode's input, `DecodingRows` the rows a decoding step works on (model.chunked)
and `Decoded` a run's output. `RowBatch` holds what `core.request.Row` holds, one tensor per
field: built from request-like groups (a prefix, a count and its knobs; row i of a group seeded
`row_seed(seed, i)`, exactly as `make_rows` seeds it) or from Row objects. `NameText` turns a block of ids into newline-ended
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

from core.noise import MAX_SEED, row_seeds
from core.request import Row
from core.vocab import Vocab

SMALL = 32  # rows up to which a batch's seeds are hashed, and its names decoded, in Python (same values)


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
        row_seed(seeds[g], i): the rows `make_rows` gives for each group, concatenated.
        Checked per group (Row's rules, the error naming the field); the rows are built with a
        fixed number of tensor operations, whatever their count."""
        name_lengths = [0] * len(nums) if name_lengths is None else list(name_lengths)
        groups = list(zip(prefixes, nums, max_lengths, temperatures, top_ks, seeds, name_lengths, strict=True))
        for g, (prefix, num, max_length, temperature, top_k, seed, _) in enumerate(groups):
            if num < 0:
                raise ValueError(f"group {g}: the count must be >= 0, got {num}")
            if max_length < max(1, len(prefix)):
                raise ValueError(f"group {g}: max_length {max_length} is shorter than the prefix "
                                 f"({len(prefix)}) or < 1")
            if not (math.isfinite(temperature) and temperature >= 0):
                raise ValueError(f"group {g}: temperature must be a finite number >= 0, got {temperature}")
            if top_k < 0:
                raise ValueError(f"group {g}: top_k must be >= 0, got {top_k}")
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"group {g}: seed must be in [0, {MAX_SEED}], got {seed}")
        if first_index + max(nums, default=0) > 2**31:
            raise ValueError(f"row index {first_index + max(nums) - 1} is too large (at most 2**31 - 1)")
        fields = torch.tensor([[len(p), m, k, s, n] for p, _, m, _, k, s, n in groups], dtype=torch.long)
        temperature = torch.tensor([float(g[3]) for g in groups], dtype=torch.float64)
        prefix = _pad_ragged(prefixes, fields[:, 0])
        if all(n == 1 for n in nums):  # one row per group (e.g. a batch of 1-name requests)
            index = torch.full((len(nums),), first_index, dtype=torch.long)
        else:
            counts = torch.tensor(list(nums), dtype=torch.long)
            group = torch.repeat_interleave(torch.arange(len(nums)), counts)
            index = torch.arange(len(group)) - (torch.cumsum(counts, 0) - counts)[group] + first_index
            fields, temperature, prefix = fields[group], temperature[group], prefix[group]
        if len(index) <= SMALL:  # ~20 operators on a handful of numbers: Python ints are cheaper
            seed = torch.tensor([row_seeds(s, i) for s, i in zip(fields[:, 3].tolist(), index.tolist())])
        else:
            seed = row_seeds(fields[:, 3], index)
        return cls(prefix=prefix, prefix_len=fields[:, 0], max_length=fields[:, 1], temperature=temperature,
                   top_k=fields[:, 2], seed=seed, name_length=fields[:, 4])

    @classmethod
    def from_rows(cls, rows: Sequence[Row], name_lengths: Sequence[int] | None = None) -> RowBatch:
        """The rows as they are (Row checks itself; their seeds are already final)."""
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
        )

    def rows(self, lo: int, hi: int) -> RowBatch:
        return RowBatch(*(getattr(self, f)[lo:hi] for f in self.__dataclass_fields__))


def _pad_ragged(seqs: Sequence[Sequence[int]], lengths: torch.Tensor) -> torch.Tensor:
    """[len(seqs), max(1, longest)] int64, row i holding seqs[i] then zeros: one scatter."""
    out = torch.zeros(len(seqs), max(1, int(lengths.max()) if len(seqs) else 1), dtype=torch.long)
    flat = [i for s in seqs for i in s]
    if flat:
        out[torch.arange(out.shape[1]) < lengths.unsqueeze(1)] = torch.tensor(flat, dtype=torch.long)
    return out


@dataclass
class Decoded:
    """A run's output. ids: int64 [B, steps] on the decoder's device, each row's symbols (prefix
    included) then end tokens. logits/hidden: each step's step output, [steps, B, V] and
    [steps, L, B, H] (record=True only; captured runs: views of static buffers, use them before
    the next run)."""

    ids: torch.Tensor
    steps: int
    chunks: int  # chunks run (graph replays, when captured)
    syncs: int  # host reads of the "all done?" flag
    logits: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    scores: torch.Tensor | None = None  # float64 [B]: each row's log p(name) (a scoring decoder, model.chunked)


class DecodingRows:
    """The rows a step decodes: token, hidden, done (None: none has ended), first_eos (the end
    token's column masked at step 0; eager runs build it from first_position, None: every row
    starts a name), prefix/forced [P, B] (forced characters), max_len (each row's length cap;
    None: one cap for all), and for eager runs rule (temperature, top_k, seed) and the Chooser
    made of it (choose), and index (each row's column in the output; None: row i is column i);
    score/scoring (a scoring run: each row's sum so far, float64, and whether it still adds)."""

    def __init__(self, **fields):
        self.max_len = self.choose = self.index = self.done = self.first_eos = self.first_position = None
        self.score = self.scoring = None
        self.__dict__.update(fields)

    def take(self, keep: torch.Tensor, prefix_left: bool) -> DecodingRows:
        """Rows `keep` only (indices): none of them ended, or (scoring) none scored its end token."""
        new = DecodingRows(token=self.token[keep], hidden=self.hidden[:, keep], choose=self.choose.take(keep),
                    index=keep if self.index is None else self.index[keep])
        new.prefix, new.forced = (self.prefix[:, keep], self.forced[:, keep]) if prefix_left else (None, None)
        if self.max_len is not None:
            new.max_len = self.max_len[keep]
        if self.score is not None:  # a row cut at its cap has ended and still scores its end token
            new.score, new.scoring, new.done = self.score[keep], self.scoring[keep], self.done[keep]
        return new


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
        self.vocab, self.eos_id = vocab, vocab.eos_id
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
        if skip is None and ids.device.type == "cpu" and ids.shape[0] <= SMALL:
            # a few rows on the host: Vocab.decode's Python costs less than the block's operators
            return [self.vocab.decode(row) for row in ids.tolist()]
        return self.text(ids, skip).split("\n")[:-1]


def ceil_to(n: int, multiple: int) -> int:
    return multiple * math.ceil(n / multiple)
