"""The decoding loop's captured path (model.chunked on a GPU): buckets of static buffers, one
host-to-device copy per batch, and chunks of steps replayed as CUDA graphs.

A batch of B rows is padded to the smallest bucket >= B (larger batches are cut into largest
buckets); padding rows are greedy with a length cap of 1, so they are done after one step. The
rows are packed on the host into one (pinned) buffer, copied to the device in one copy, and a
captured "load" graph derives everything per row from it; then `chunk` steps at a time replay a
graph captured at warm-up per bucket, sampling mode, recording and position, each chunk the
loop's own step body (`ChunkedDecoder._step_rows`) with the chunk's noise drawn at once, and the
host reads one "all done?" flag per chunk. Without a graph (a bucket not warmed up, or the CPU
test stand-in for the graphs) the same chunk runs eagerly, counted in `eager_chunks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from model.batch import Decoded, DecodingRows, RowBatch
from model.choose import (
    Start,
    divisors,
    end_forbidden,
    greedy_rows_of,
    gumbel_noise,
    kth_indices,
    pick,
    row_argmax,
    seed_hashes,
    step_hashes,
)

if TYPE_CHECKING:
    from model.chunked import ChunkedDecoder

GREEDY, SAMPLE, TOP_K = "greedy", "sample", "top_k"
MODES = (GREEDY, SAMPLE, TOP_K)
# int64 fields packed per row after the prefix (their column in the packed buffer)
PREFIX_LEN, MAX_LENGTH, SEED, TEMPERATURE, TOP_K_FIELD, NAME_LENGTH = range(6)
FIELDS = 6


class _Slot:
    """The static buffers of one bucket for captured runs (all on the decoder's device)."""

    def __init__(self, size: int, d: ChunkedDecoder):
        dev, P, T = d.device, d.max_prefix, d.max_chunks * d.chunk
        width = 2 * P + 8 * FIELDS  # bytes per row: int16 prefix, then int64 fields
        self.size = size
        self.host = torch.zeros(size, width, dtype=torch.uint8, pin_memory=dev.type == "cuda")
        self.packed = self.host if dev.type == "cpu" else torch.zeros(size, width, dtype=torch.uint8, device=dev)
        self.host_prefix, self.host_fields = _views(self.host, P)
        self.packed_prefix, self.packed_fields = _views(self.packed, P)
        (L, H), V = d.hidden_shape, d.vocab_size
        self.token = torch.zeros(size, dtype=torch.long, device=dev)
        self.hidden = torch.zeros(L, size, H, dtype=d.dtype, device=dev)
        self.prefix = torch.zeros(P, size, dtype=torch.long, device=dev)
        self.forced = torch.zeros(P, size, dtype=torch.bool, device=dev)
        self.max_len = torch.ones(size, dtype=torch.long, device=dev)
        self.first_eos = torch.zeros(size, V, dtype=torch.bool, device=dev)
        self.divisor = torch.ones(size, 1, dtype=d.dtype, device=dev)
        self.greedy_rows = torch.ones(size, dtype=torch.bool, device=dev)
        self.kth_index = torch.zeros(size, 1, dtype=torch.long, device=dev)
        self.seed_hash = torch.zeros(size, 1, dtype=torch.int32, device=dev)
        self.done = torch.zeros(size, dtype=torch.bool, device=dev)
        self.all_done = torch.zeros((), dtype=torch.bool, device=dev)
        self.out = torch.zeros(T, size, dtype=torch.long, device=dev)
        # a scoring decoder's sums (model.chunked): float64 per row, and whether each still adds
        self.score = torch.zeros(size, dtype=torch.float64, device=dev) if d.score else None
        self.scoring = torch.zeros(size, dtype=torch.bool, device=dev) if d.score else None
        self.rec_logits = self.rec_hidden = None
        self.graphs: dict = {}
        # the last host-to-device copy of `host`: wait for it before packing the next rows there
        self.copied = torch.cuda.Event() if dev.type == "cuda" else None

    def recording(self, d: ChunkedDecoder) -> None:
        if self.rec_logits is None:
            T, (L, H) = d.chunks_for(True) * d.chunk, d.hidden_shape
            self.rec_logits = torch.zeros(T, self.size, d.vocab_size, dtype=d.dtype, device=d.device)
            self.rec_hidden = torch.zeros(T, L, self.size, H, dtype=d.dtype, device=d.device)


def _views(buf: torch.Tensor, P: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The int16 prefix [size, P] and int64 fields [size, FIELDS] inside a packed byte buffer."""
    return buf[:, : 2 * P].view(torch.int16), buf[:, 2 * P:].view(torch.int64)


class Captured:
    """The slots (buckets) of one decoder and their graphs."""

    def __init__(self, d: ChunkedDecoder):
        self.d = d
        self.slots: dict[int, _Slot] = {}
        self.eager_chunks = 0  # chunks run without a graph (not warmed up)
        self._step_table: torch.Tensor | None = None

    @property
    def step_table(self) -> torch.Tensor:
        """The noise's (step, symbol) hashes of every position this decoder reaches, held here for
        as long as the decoder and its graphs: a graph reads the address it captured, and
        model.choose replaces its cached table when a later decoder needs more steps."""
        if self._step_table is None:
            d = self.d
            self._step_table = step_hashes(0, d.max_chunks * d.chunk, d.vocab_size, d.device)
        return self._step_table

    def warm_up(self, sizes: Sequence[int] | None, modes: Sequence[str], record: bool) -> int:
        d = self.d
        self.step_table  # noqa: B018 (hashed before any capture)
        buckets = sorted({d.bucket(n) for n in sizes} if sizes is not None else d.buckets)
        variants = [(m, False) for m in modes] + ([(GREEDY, True)] if record else [])
        captured = 0
        for size in buckets:
            slot = self._slot(size)
            if record:
                slot.recording(d)
            captured += self._capture(slot, variants)
        return captured

    def run(self, batch: RowBatch, steps: int, start: Start | None, record: bool) -> Decoded:
        d, n = self.d, len(batch)
        if n > d.buckets[-1]:
            if start is not None or record:
                raise ValueError(f"{n} rows with start/record: at most {d.buckets[-1]} per run")
            return self._run_in_pieces(batch, steps)
        mode = d.mode(batch)
        slot = self._slot(d.bucket(n))
        if record:
            slot.recording(d)
        if slot.copied is not None:
            slot.copied.synchronize()  # a run without host reads may still be copying `host`
        self._pack(slot, batch)
        if slot.packed is not slot.host:
            slot.packed.copy_(slot.host, non_blocking=True)  # the one host-to-device copy
            slot.copied.record()
        self._replay(slot, ("load",), lambda: self._load(slot))
        if start is not None:
            slot.token[:n].copy_(start.token)
            slot.hidden[:, :n].copy_(start.hidden)
        scoring = d.score and not record
        last = steps + scoring  # a scoring run's extra step scores the end token of rows cut at their cap
        chunks_needed, chunks, syncs = math.ceil(last / d.chunk), 0, 0
        for k in range(chunks_needed):
            self._replay(slot, (mode, record, k), lambda k=k: self._chunk(slot, k, mode, record))
            chunks += 1
            if k + 1 < chunks_needed:
                syncs += 1
                if bool(slot.all_done):  # the host read of this chunk
                    break
        ran = min(steps, chunks * d.chunk)
        ids = slot.out[:ran, :n].t().contiguous()
        logits = slot.rec_logits[:ran, :n] if record else None
        hidden = slot.rec_hidden[:ran, :, :n] if record else None
        scores = slot.score[:n].clone() if scoring else None
        return Decoded(ids, ran, chunks, syncs, logits, hidden, scores)

    def _slot(self, size: int) -> _Slot:
        if size not in self.slots:
            self.slots[size] = _Slot(size, self.d)
        return self.slots[size]

    def _pack(self, slot: _Slot, batch: RowBatch) -> None:
        """Rows into the host buffer, padding rows after them (greedy, cap 1), vectorised."""
        n, width = len(batch), batch.prefix.shape[1]
        prefix, fields = slot.host_prefix, slot.host_fields
        used = min(width, self.d.max_prefix)
        prefix[:n, :used].copy_(batch.prefix[:, :used])
        prefix[:n, used:].zero_()
        fields[:n].copy_(torch.stack([batch.prefix_len, batch.max_length, batch.seed,
                                      batch.temperature.view(torch.int64), batch.top_k, batch.name_length], 1))
        if n < slot.size:
            prefix[n:].zero_()
            fields[n:].zero_()
            fields[n:, MAX_LENGTH] = 1

    def _load(self, s: _Slot) -> None:
        """Everything per row that the steps read, derived on the device from the packed rows."""
        d, f = self.d, s.packed_fields
        vocab = d.vocab_size
        s.prefix.copy_(s.packed_prefix.t())
        s.forced.copy_(torch.arange(d.max_prefix, device=d.device).unsqueeze(1) < f[:, PREFIX_LEN])
        s.max_len.copy_(f[:, MAX_LENGTH])
        s.seed_hash.copy_(seed_hashes(f[:, SEED]))
        temperature = f[:, TEMPERATURE].view(torch.float64).to(d.dtype)
        s.divisor.copy_(divisors(temperature))
        s.greedy_rows.copy_(greedy_rows_of(temperature))
        s.kth_index.copy_(kth_indices(f[:, TOP_K_FIELD], vocab))
        s.first_eos.copy_(end_forbidden(f[:, NAME_LENGTH] == 0, vocab, d.eos_id, d.device))
        s.token.fill_(d.bos_id)
        s.hidden.zero_()
        s.done.zero_()
        if s.score is not None:
            s.score.zero_()
            s.scoring.fill_(True)

    def _chunk(self, s: _Slot, k: int, mode: str, record: bool) -> None:
        """Steps k*chunk .. k*chunk + chunk - 1 of a slot's rows: the loop's step body (choice,
        prefix, end test) on its buffers, with the noise of the whole chunk drawn at once (fewer
        kernels); the results written back into the static buffers."""
        d = self.d
        first = k * d.chunk
        rows = DecodingRows(token=s.token, hidden=s.hidden, done=s.done, first_eos=s.first_eos, prefix=s.prefix,
                            forced=s.forced, max_len=s.max_len)
        scoring = s.score is not None and not record
        if scoring:
            rows.score, rows.scoring = s.score, s.scoring
        kth = s.kth_index if mode == TOP_K else None
        noise = None if mode == GREEDY else gumbel_noise(s.seed_hash, self.step_table[first:first + d.chunk], d.dtype)
        for j in range(d.chunk):
            t = first + j
            choose = row_argmax if mode == GREEDY else \
                (lambda lg, j=j: pick(lg, s.divisor, kth, noise[j], s.greedy_rows))
            keep = (lambda lg, h, t=t: (s.rec_logits[t].copy_(lg), s.rec_hidden[t].copy_(h))) if record else None
            s.out[t].copy_(d._step_rows(rows, t, d.max_prefix, choose, keep))
        s.token.copy_(rows.token)
        s.hidden.copy_(rows.hidden)
        s.done.copy_(rows.done)
        if scoring:
            s.score.copy_(rows.score)
            s.scoring.copy_(rows.scoring)
        s.all_done.copy_(~rows.scoring.any() if scoring else rows.done.all())

    def _replay(self, slot: _Slot, key: tuple, work: Callable[[], None]) -> None:
        graph = slot.graphs.get(key)
        if graph is not None:
            graph.replay()
            return
        self.eager_chunks += 1
        work()

    def _run_in_pieces(self, batch: RowBatch, steps: int) -> Decoded:
        size, parts = self.d.buckets[-1], []
        for lo in range(0, len(batch), size):
            piece = batch.rows(lo, lo + size)
            parts.append(self.run(piece, int(piece.max_length.max()), None, False))
        steps = max(p.steps for p in parts)
        pad = self.d.eos_id
        ids = torch.cat([torch.nn.functional.pad(p.ids, (0, steps - p.steps), value=pad) for p in parts])
        scores = torch.cat([p.scores for p in parts]) if self.d.score else None
        return Decoded(ids, steps, sum(p.chunks for p in parts), sum(p.syncs for p in parts), scores=scores)

    def _capture(self, slot: _Slot, variants: Sequence[tuple[str, bool]]) -> int:
        """Capture slot's load graph and every chunk of `variants` (once each)."""
        todo = [(m, r, k) for m, r in variants for k in range(self.d.chunks_for(r)) if (m, r, k) not in slot.graphs]
        if "load" not in slot.graphs:
            todo.insert(0, ("load",))

        def work(key):
            if key == ("load",):
                return lambda: self._load(slot)
            mode, record, k = key
            return lambda: self._chunk(slot, k, mode, record)

        with torch.inference_mode():
            slot.graphs.update(self.d.graphs.capture({key: work(key) for key in todo}))
        return len(todo)
