"""What a decoding step decides for each row: the one home of that rule for the torch decoder.

A row's next symbol is the argmax of its logits (temperature 0), or a Gumbel-max sample of its
temperature-scaled, top-k-restricted distribution with counter-based noise (core.noise): the
noise of (row seed, step, symbol) never depends on the batch, so a row gets the same name alone,
in any batch, bucket or device, except at a near-tie of two scores (docs/numerics.md).
`model.decode_numpy.Chooser` is the numpy twin: the same noise bits, the same rule.

The decoding loop (model.chunked) calls `Chooser` once per step; its captured chunks (model.captured)
run `gumbel_noise` and `pick` (the noise of a chunk of steps at once on a GPU) on buffers their load
graph fills with the same per-row rule: `divisors`, `greedy_rows_of`, `kth_indices`, `end_forbidden`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.noise import NOISE_CHUNK, mix32, seeded_bits32, to_unit_interval

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
SMALL = 32  # rows up to which a Chooser decides from Python lists (per-operator overhead dominates)


@dataclass
class Start:
    """Where decoding starts: the next input token and hidden state per row, and how many
    characters each row's name already has (a session continuing a name)."""

    token: torch.Tensor  # int64 [B]
    hidden: torch.Tensor  # float [L, B, H]
    name_length: torch.Tensor  # int64 [B]


def as_int32(x: torch.Tensor) -> torch.Tensor:
    """32-bit values held in int64 (0 <= x < 2**32) as int32 with the same bits (core.noise.seeded_bits32)."""
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def seed_hashes(seeds: torch.Tensor) -> torch.Tensor:
    """mix32 of each row's seed (int64 [B]), fixed for a whole decode: int32 [B, 1]."""
    return as_int32(mix32(seeds)).unsqueeze(1)


_STEP_HASHES: dict[tuple[int, torch.device], torch.Tensor] = {}


def step_hashes(first: int, steps: int, vocab: int, device: torch.device) -> torch.Tensor:
    """The (step, symbol) half of the noise hash, mix32(symbol + step * 65536 + 1), as int32
    [steps, 1, vocab]: it does not depend on the rows, so it is hashed once per vocabulary and
    device (grown as longer names need it) instead of once per decoding step. Growing replaces
    the cached table: whoever captures graphs reading it holds the tensor returned for as long
    as the graphs (model.captured does), or a replay would read freed memory."""
    key = (vocab, torch.device(device))
    table = _STEP_HASHES.get(key)
    if table is None or table.shape[0] < first + steps:
        size = max(64, 2 * (first + steps))
        at = torch.arange(size, device=device).view(-1, 1, 1) * 65536
        table = _STEP_HASHES[key] = as_int32(mix32(torch.arange(vocab, device=device).view(1, 1, -1) + at + 1))
    return table[first:first + steps]


def gumbel_noise(seed_hash: torch.Tensor, step_hash: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """log(-log(u)) [steps, B, V] of rows with hashed seeds seed_hash (int32 [B, 1]) at the steps
    of step_hash (int32 [steps, 1, V]); u is core.noise's uniform draw of (row seed, step, symbol)."""
    bits = seeded_bits32(seed_hash.unsqueeze(0), step_hash)
    return to_unit_interval(bits.to(dtype)).log_().neg_().log_()  # in place: the same values, less memory traffic


def row_argmax(x: torch.Tensor) -> torch.Tensor:
    """The first index of each row's maximum, as argmax gives it. torch.max's indices are the
    same (both documented as the first maximal value) and take fewer passes over many CPU rows;
    for a few rows argmax's smaller call overhead wins."""
    return torch.max(x, dim=1).indices if x.shape[0] > SMALL else x.argmax(dim=1)


def divisors(temperature: torch.Tensor) -> torch.Tensor:
    """Each row's temperature (in the logits' dtype) as the divisor of its logits [B, 1]: clamped
    so a greedy row (temperature 0, chosen by argmax instead) divides by a finite number."""
    return temperature.clamp_min(1e-6).unsqueeze(1)


def greedy_rows_of(temperature: torch.Tensor) -> torch.Tensor:
    """The rows [B] that take the argmax in a sampling batch (temperature 0 in the logits' dtype)."""
    return temperature == 0


def restricting(top_k: torch.Tensor, vocab: int) -> torch.Tensor:
    """The rows [B] whose top-k drops symbols: k >= vocab (or 0) keeps every symbol."""
    return (top_k > 0) & (top_k < vocab)


def kth_indices(top_k: torch.Tensor, vocab: int) -> torch.Tensor:
    """Each row's top-k threshold as an index into its descending-sorted logits [B, 1] (the last
    one, vocab - 1, for a row that keeps every symbol)."""
    return (torch.where(restricting(top_k, vocab), top_k, vocab) - 1).unsqueeze(1)


def end_forbidden(first_position: torch.Tensor | None, vocab: int, eos_id: int,
                  device: torch.device | str) -> torch.Tensor:
    """The logits masked at step 0: the end token's column for rows at a name's first position
    (first_position [B]; None: every row), so no name is empty. [B, V], or [1, V] for all rows."""
    eos_column = (torch.arange(vocab, device=device) == eos_id).unsqueeze(0)
    return eos_column if first_position is None else first_position.unsqueeze(1) & eos_column


def pick(logits: torch.Tensor, divisor: torch.Tensor | None, kth_index: torch.Tensor | None, noise: torch.Tensor,
         greedy_rows: torch.Tensor | None) -> torch.Tensor:
    """One step's symbols: Gumbel-max over the temperature-scaled (divisor [B, 1]; None: every
    row's temperature is 1, and x / 1 is x), top-k restricted (kth_index [B, 1], None: no row
    restricts) logits; argmax for greedy_rows [B] (None: none). noise is overwritten."""
    scaled = logits if divisor is None else logits / divisor
    if kth_index is not None:
        kth = scaled.sort(dim=1, descending=True).values.gather(1, kth_index)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    sampled = row_argmax(torch.sub(scaled, noise, out=noise))
    if greedy_rows is None:
        return sampled
    return torch.where(greedy_rows, row_argmax(logits), sampled)


class Chooser:
    """Each row's choice rule, decided once for a decode: which rows sample, their temperature
    divisors and top-k thresholds, their hashed seeds. Fields no row needs are None, so a step
    runs only the work its rows need. `take` keeps some rows (the loop drops ended ones)."""

    def __init__(self, temperature: torch.Tensor, top_k: torch.Tensor, seed: torch.Tensor, vocab: int,
                 dtype: torch.dtype):
        """temperature (float64), top_k, seed (int64): one per row, on the decoding device."""
        self.vocab, self.dtype = vocab, dtype
        self.divisor = self.greedy_rows = self.kth_index = self.seed_hash = self.noise = None
        self.noise_from = 0
        # what holds for every row, decided on the host (a few rows: from lists, cheaper than
        # reductions), as the numpy twin decides it: who samples from the float64 temperature,
        # the greedy rows of a mixed batch and the divisor from the float32 one
        small = len(temperature) <= SMALL and temperature.device.type == "cpu"
        t = temperature.tolist() if small else None
        self.sampling = any(x > 0 for x in t) if small else bool((temperature > 0).any())
        if not self.sampling:
            return
        temps = temperature.to(dtype)
        if not (all(x == 1 for x in t) if small else bool((temperature == 1).all())):
            self.divisor = divisors(temps)
        if not (all(x > 0 for x in t) if small else bool((temperature > 0).all())):
            self.greedy_rows = greedy_rows_of(temps)
        # restricting's rule on Python ints for a few rows (the same test, without its operators)
        if any(0 < k < vocab for k in top_k.tolist()) if small else bool(restricting(top_k, vocab).any()):
            self.kth_index = kth_indices(top_k, vocab)
        if small:  # the same function on Python ints
            hashes = [h - 2**32 if h >= 2**31 else h for h in (mix32(x) for x in seed.tolist())]
            self.seed_hash = torch.tensor(hashes, dtype=torch.int32).unsqueeze(1)
        else:
            self.seed_hash = seed_hashes(seed)

    @classmethod
    def for_rows(cls, rows, vocab: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Chooser:
        """From core.request.Row objects."""
        return cls(torch.tensor([float(r.temperature) for r in rows], dtype=torch.float64, device=device),
                   torch.tensor([r.top_k for r in rows], dtype=torch.long, device=device),
                   torch.tensor([r.seed for r in rows], dtype=torch.long, device=device), vocab, dtype)

    def take(self, keep: torch.Tensor) -> Chooser:
        """The rule of rows `keep` (indices) only."""
        new = object.__new__(Chooser)
        new.__dict__.update(self.__dict__)
        new.noise = None  # drawn again for the rows kept
        for name in ("divisor", "greedy_rows", "kth_index", "seed_hash"):
            value = getattr(self, name)
            if value is not None:
                setattr(new, name, value[keep])
        return new

    def __call__(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        if not self.sampling:
            return row_argmax(logits)
        return pick(logits, self.divisor, self.kth_index, self._noise(step, logits.device), self.greedy_rows)

    def _noise(self, step: int, device: torch.device) -> torch.Tensor:
        """The step's noise [B, V]. A few rows draw NOISE_CHUNK steps' at once (per-operator
        overhead dominates); many rows one step's at a time (it stays in cache)."""
        if self.noise is not None and self.noise_from <= step < self.noise_from + len(self.noise):
            return self.noise[step - self.noise_from]
        steps = NOISE_CHUNK if len(self.seed_hash) * self.vocab * NOISE_CHUNK <= 2**16 else 1
        noise = gumbel_noise(self.seed_hash, step_hashes(step, steps, self.vocab, device), self.dtype)
        if steps > 1:
            self.noise, self.noise_from = noise, step
        return noise[0]
