"""The one decoding loop for the torch backends (eager CharRNN, TorchScript step, the server).

`decode` runs a batch of rows, each with its own prefix, length cap, temperature, top-k and
seed, through any step callable `(char [B], hidden [L, B, H]) -> (logits [B, V], hidden)`.
Rows never influence each other: a row decodes the same alone or in any batch.

Everything stays on the step's device: end-of-name is decided on the device, and the host reads
back only a "all rows done?" flag every `check_every` steps (every step on CPU, where that is
free) and the ids once at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from core.noise import NOISE_CHUNK, mix32, seeded_bits, to_unit_interval
from core.request import Row

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Start:
    """Where decoding starts: the next input token and hidden state per row, and how many
    characters each row's name already has (a session continuing a name)."""

    token: torch.Tensor  # int64 [B]
    hidden: torch.Tensor  # float [L, B, H]
    name_length: torch.Tensor  # int64 [B]


class Chooser:
    """Picks each row's next symbol: argmax for temperature 0, else a Gumbel-max sample of the
    temperature-scaled, top-k-restricted distribution using counter-based noise
    (core.noise; model.decode_numpy.Chooser is the numpy twin, with the same values).

    A step of this model is a handful of small kernels, and hashing the noise is ~30 more: so
    what is fixed for the whole decode (which rows sample, who uses top-k, the rows' seed hashes)
    is decided once, and the noise is drawn NOISE_CHUNK steps at a time (one set of kernels per
    chunk instead of per step, which is what a GPU pays for)."""

    def __init__(self, rows: Sequence[Row], device: torch.device):
        self.sampling = any(r.temperature > 0 for r in rows)
        if not self.sampling:
            return
        temperature = torch.tensor([float(r.temperature) for r in rows], device=device)
        self.greedy_rows = None if all(r.temperature > 0 for r in rows) else temperature == 0
        self.divisor = temperature.clamp_min(1e-6).unsqueeze(1)
        self.top_k = [r.top_k for r in rows]
        self.kth_index: torch.Tensor | None = None
        self.seed_hash = mix32(torch.tensor([r.seed for r in rows], device=device, dtype=torch.long)).unsqueeze(1)
        self.noise = torch.empty(0, device=device)
        self.noise_from = 0

    def _start(self, vocab: int, dtype: torch.dtype) -> None:
        """What depends on the logits (vocabulary size, dtype), known at the first step."""
        device, self.dtype = self.seed_hash.device, dtype
        self.symbols = torch.arange(vocab, device=device).view(1, 1, vocab)
        if any(0 < k < vocab for k in self.top_k):  # k >= vocab (or 0) keeps every symbol
            k = torch.tensor([min(k, vocab) if k > 0 else vocab for k in self.top_k], device=device)
            self.kth_index = (k - 1).unsqueeze(1)

    def _noise(self, step: int) -> torch.Tensor:
        """log(-log(u)) for `step`, u the uniform draw of (row seed, step, symbol) (core.noise)."""
        if not self.noise_from <= step < self.noise_from + len(self.noise):
            self.noise = gumbel_noise(self.seed_hash, step, NOISE_CHUNK, self.symbols, self.dtype)
            self.noise_from = step
        return self.noise[step - self.noise_from]

    def __call__(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        if not self.sampling:
            return logits.argmax(dim=1)
        if step == 0:
            self._start(logits.shape[1], logits.dtype)
        return pick(logits, self.divisor, self.kth_index, self._noise(step), self.greedy_rows)


def gumbel_noise(seed_hash: torch.Tensor, first_step: int, steps: int, symbols: torch.Tensor,
                 dtype: torch.dtype) -> torch.Tensor:
    """log(-log(u)) [steps, B, V] for decoding steps first_step.. of rows with hashed seeds
    seed_hash [B, 1] (symbols: arange(V) as [1, 1, V]); u is core.noise's uniform draw."""
    at = torch.arange(first_step, first_step + steps, device=seed_hash.device).view(-1, 1, 1)
    bits = seeded_bits(seed_hash.unsqueeze(0), at, symbols)
    return to_unit_interval(bits.to(dtype)).log_().neg_().log_()  # in place: the same values, less memory traffic


def pick(logits: torch.Tensor, divisor: torch.Tensor, kth_index: torch.Tensor | None, noise: torch.Tensor,
         greedy_rows: torch.Tensor | None) -> torch.Tensor:
    """One step's symbols: Gumbel-max over the temperature-scaled (divisor [B, 1]), top-k
    restricted (kth_index [B, 1], None: no row restricts) logits; argmax for greedy_rows [B]."""
    scaled = logits / divisor
    if kth_index is not None:
        kth = scaled.sort(dim=1, descending=True).values.gather(1, kth_index)
        scaled.masked_fill_(scaled < kth, float("-inf"))
    sampled = scaled.sub_(noise).argmax(dim=1)  # scaled is this function's own tensor
    if greedy_rows is None:
        return sampled
    return torch.where(greedy_rows, logits.argmax(dim=1), sampled)


@torch.inference_mode()
def decode(step: Step, rows: Sequence[Row], *, bos_id: int, eos_id: int, hidden_shape: tuple[int, int],
           device: torch.device | str = "cpu", start: Start | None = None, check_every: int | None = None,
           on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> list[list[int]]:
    """Decode `rows`; returns each row's symbol ids (prefix included, end token excluded).

    hidden_shape: (num_layers, hidden_size) of the step. on_step(t, ids [B], active [B]) is
    called after each step with the symbols just chosen and which of them extend a name
    (streaming); reading them forces a host sync per step, so leave it None on GPU.
    """
    device = torch.device(device)
    batch = len(rows)
    if batch == 0:
        return []
    if check_every is None:
        check_every = 1 if device.type == "cpu" else 8
    # Everything known on the host is decided on the host, so each step runs only the ops it
    # needs (per-op overhead dominates a step this small).
    longest_prefix = max(len(r.prefix) for r in rows)
    shortest_cap = min(r.max_length for r in rows)
    steps = max(r.max_length for r in rows)
    prefix = torch.full((batch, max(1, longest_prefix)), eos_id, dtype=torch.long)
    for i, r in enumerate(rows):
        prefix[i, : len(r.prefix)] = torch.as_tensor(list(r.prefix), dtype=torch.long)
    prefix = prefix.to(device).t().contiguous()  # [time, batch]: one row per step
    prefix_len = torch.tensor([len(r.prefix) for r in rows], device=device)
    forced = torch.arange(max(1, longest_prefix), device=device).unsqueeze(1) < prefix_len  # [time, batch]
    max_len = torch.tensor([r.max_length for r in rows], device=device)
    choose = Chooser(rows, device)

    if start is None:
        token = torch.full((batch,), bos_id, dtype=torch.long, device=device)
        hidden = torch.zeros(hidden_shape[0], batch, hidden_shape[1], device=device)
        first_position = None  # every row starts a name
    else:
        token, hidden = start.token.to(device), start.hidden.to(device)
        first_position = (start.name_length.to(device) == 0).unsqueeze(1)

    chosen_ids: list[torch.Tensor] = []
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for t in range(steps):
        logits, hidden = step(token, hidden)
        if t == 0:  # a name has at least one character: no end token at its first position
            eos_column = torch.arange(logits.shape[1], device=device).unsqueeze(0) == eos_id
            logits = logits.masked_fill(eos_column if first_position is None else first_position & eos_column,
                                        float("-inf"))
        token = choose(logits, t)
        if t < longest_prefix:
            token = torch.where(forced[t], prefix[t], token)
        if t > 0:
            token = token.masked_fill(done, eos_id)
        chosen_ids.append(token)
        if on_step is not None:
            on_step(t, token, ~done & (token != eos_id))
        done = done | (token == eos_id)
        if t + 1 >= shortest_cap:
            done = done | (max_len <= t + 1)
        if (t + 1) % check_every == 0 and bool(done.all()):
            break
    out = torch.stack(chosen_ids, dim=1)
    ids = out.cpu().tolist()  # the one copy back to the host
    return [_until_eos(row, eos_id)[: r.max_length] for row, r in zip(ids, rows)]


def _until_eos(ids: list[int], eos_id: int) -> list[int]:
    return ids[: ids.index(eos_id)] if eos_id in ids else ids
