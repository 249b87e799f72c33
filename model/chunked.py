"""Decoding in chunks of steps over static per-bucket buffers: CUDA graphs on a GPU, the same
code run eagerly on CPU.

`model.decode.decode` launches every step's kernels from Python and reads an "all done?" flag
every few steps. On a GPU a step of this model is ~20 tiny kernels, so launching costs far more
than the arithmetic. `ChunkedDecoder` instead:

- pads a batch to the smallest bucket (BUCKETS) that holds it, and keeps per bucket static
  device buffers: the packed rows, the decoding state, the output ids;
- packs the rows on the host into one buffer (pinned on CUDA) and copies it to the device in
  one copy; everything derived from them (seed hashes, top-k indices, forced prefix steps) is
  computed on the device by a captured "load" graph;
- runs `chunk` steps at a time: on CUDA each chunk (per bucket, sampling mode and position) is
  a torch.cuda.CUDAGraph captured at warm-up, replayed, and the host reads one "all done?" flag
  per chunk; on CPU, or with capture off, the very same chunk function runs eagerly;
- leaves the ids on the device for `model.batch.NameText` to turn into text.

Rows are decoded exactly as by `decode` (the same ops per step, shared via model.decode's
`gumbel_noise` and `pick`): a row gets the same name alone, in any bucket, on either path.
Padding rows are greedy with a length cap of 1, so they are done after the first step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from model.batch import RowBatch
from model.decode import Start, Step, gumbel_noise, pick
from model.noise import NOISE_CHUNK, mix32
from model.request import Row

BUCKETS = (1, 8, 64, 256, 1024, 4096, 16384, 65536)
GREEDY, SAMPLE, TOP_K = "greedy", "sample", "top_k"
MODES = (GREEDY, SAMPLE, TOP_K)
# int64 fields packed per row after the prefix (their column in the packed buffer)
PREFIX_LEN, MAX_LENGTH, SEED, TEMPERATURE, TOP_K_FIELD, NAME_LENGTH = range(6)
FIELDS = 6


@dataclass
class Decoded:
    """A run's output. ids: int64 [B, steps] on the decoder's device, each row's symbols (prefix
    included) then end tokens. logits/hidden: each step's step output, [steps, B, V] and
    [steps, L, B, H] (record=True only), views of static buffers: use them before the next run."""

    ids: torch.Tensor
    steps: int
    chunks: int  # chunks run (graph replays, when captured)
    syncs: int  # host reads of the "all done?" flag
    logits: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


class _Slot:
    """The static buffers of one bucket (all on the decoder's device)."""

    def __init__(self, size: int, d: ChunkedDecoder):
        dev, P, T = d.device, d.max_prefix, d.max_chunks * d.chunk
        width = 2 * P + 8 * FIELDS  # bytes per row: int16 prefix, then int64 fields
        self.size = size
        self.host = torch.zeros(size, width, dtype=torch.uint8, pin_memory=d.capture and dev.type == "cuda")
        self.packed = self.host if dev.type == "cpu" else torch.zeros(size, width, dtype=torch.uint8, device=dev)
        self.host_prefix, self.host_fields = _views(self.host, P)
        self.packed_prefix, self.packed_fields = _views(self.packed, P)
        L, H = d.hidden_shape
        self.token = torch.zeros(size, dtype=torch.long, device=dev)
        self.hidden = torch.zeros(L, size, H, dtype=d.dtype, device=dev)
        self.prefix = torch.zeros(P, size, dtype=torch.long, device=dev)
        self.forced = torch.zeros(P, size, dtype=torch.bool, device=dev)
        self.max_len = torch.ones(size, dtype=torch.long, device=dev)
        self.first_eos = torch.zeros(size, d.vocab_size, dtype=torch.bool, device=dev)
        self.divisor = torch.ones(size, 1, dtype=d.dtype, device=dev)
        self.greedy_rows = torch.ones(size, dtype=torch.bool, device=dev)
        self.kth_index = torch.zeros(size, 1, dtype=torch.long, device=dev)
        self.seed_hash = torch.zeros(size, 1, dtype=torch.long, device=dev)
        self.done = torch.zeros(size, dtype=torch.bool, device=dev)
        self.all_done = torch.zeros((), dtype=torch.bool, device=dev)
        self.out = torch.zeros(T, size, dtype=torch.long, device=dev)
        self.rec_logits: torch.Tensor | None = None
        self.rec_hidden: torch.Tensor | None = None
        self.graphs: dict = {}
        # the last host-to-device copy of `host`: wait for it before packing the next rows there
        self.copied = torch.cuda.Event() if dev.type == "cuda" else None

    def recording(self, d: ChunkedDecoder) -> None:
        if self.rec_logits is None:
            T, (L, H) = d.max_chunks * d.chunk, d.hidden_shape
            self.rec_logits = torch.zeros(T, self.size, d.vocab_size, dtype=d.dtype, device=d.device)
            self.rec_hidden = torch.zeros(T, L, self.size, H, dtype=d.dtype, device=d.device)


class _Live:
    """The rows of a slot not yet done, gathered (eager runs only): once most rows have ended,
    later chunks decode only the others. Rows are independent, so their names do not change;
    `flush` writes their later ids back into the slot's output (the ended rows' are end tokens)."""

    STATE = ("token", "prefix", "forced", "max_len", "first_eos", "divisor", "greedy_rows", "kth_index",
             "seed_hash", "done")

    @classmethod
    def shrink(cls, s: _Slot | _Live, from_step: int) -> _Slot | _Live:
        live = (~s.done).nonzero().squeeze(1)
        rows = s.done.shape[0]
        if len(live) > rows // 2:  # not worth the gathering yet
            return s
        new = cls()
        for name in cls.STATE:
            value = getattr(s, name)
            setattr(new, name, value[:, live] if name in ("prefix", "forced") else value[live])
        new.hidden = s.hidden[:, live]
        new.all_done = s.all_done.clone()
        new.out = torch.empty(s.out.shape[0], len(live), dtype=s.out.dtype, device=s.out.device)
        new.index = s.index[live] if isinstance(s, _Live) else live  # rows in the slot
        new.from_step = from_step
        new.parent = s
        return new

    def flush(self, slot: _Slot, until: int, eos_id: int) -> None:
        """Write each level's steps (from its gathering to the next one's) back into the slot's
        columns; rows that ended before a gathering get end tokens from it on."""
        chain, level = [], self
        while isinstance(level, _Live):
            chain.insert(0, level)  # outermost first
            level = level.parent
        slot.out[chain[0].from_step:until].fill_(eos_id)
        for level, inner in zip(chain, chain[1:] + [None]):
            end = inner.from_step if inner is not None else until
            slot.out[level.from_step:end, level.index] = level.out[level.from_step:end]


def _views(buf: torch.Tensor, P: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The int16 prefix [size, P] and int64 fields [size, FIELDS] inside a packed byte buffer."""
    return buf[:, : 2 * P].view(torch.int16), buf[:, 2 * P:].view(torch.int64)


class ChunkedDecoder:
    """See the module docstring. step: `(char [B], hidden [L, B, H]) -> (logits [B, V], hidden)`.

    max_steps: the longest max_length a row may ask for; max_prefix: the longest prefix (forced
    characters). capture: CUDA graphs (default: on a CUDA device). Call `warm_up` at load: on
    CUDA it captures the graphs; a chunk without a graph (not warmed up) runs eagerly, counted in
    `eager_chunks`, and is never captured on the request path."""

    def __init__(self, step: Step, *, bos_id: int, eos_id: int, hidden_shape: tuple[int, int],
                 device: torch.device | str = "cpu", buckets: Sequence[int] = BUCKETS, max_steps: int = 64,
                 max_prefix: int = 32, chunk: int = NOISE_CHUNK, capture: bool | None = None,
                 compact: bool = True, graphs: CudaGraphs | None = None):
        self.step, self.bos_id, self.eos_id = step, bos_id, eos_id
        self.hidden_shape = tuple(hidden_shape)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.buckets = tuple(sorted({int(b) for b in buckets}))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError(f"buckets must be sizes >= 1, got {buckets}")
        if max_steps < 1 or max_prefix < 0 or chunk < 1:
            raise ValueError("max_steps and chunk must be >= 1 and max_prefix >= 0")
        self.chunk = chunk
        self.compact = compact  # eager runs: drop ended rows between chunks (see _Live)
        self.max_steps = max_steps
        self.max_chunks = math.ceil(max_steps / chunk)
        self.max_prefix = 8 * math.ceil(max(1, min(max_prefix, max_steps)) / 8)  # keeps int64 fields aligned
        self.capture = self.device.type == "cuda" if capture is None else bool(capture)
        if self.capture and self.device.type != "cuda" and graphs is None:
            raise ValueError("capture (CUDA graphs) needs a CUDA device")
        self.graphs = graphs if graphs is not None else CudaGraphs(self.device) if self.capture else None
        if self.device.type == "cuda":
            # parity with CPU results over speed: TF32 could flip a near-tie argmax
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        with torch.inference_mode():  # the vocabulary size and dtype, from one step
            probe = self.step(torch.full((1,), bos_id, dtype=torch.long, device=self.device),
                              torch.zeros(self.hidden_shape[0], 1, self.hidden_shape[1], device=self.device))[0]
        self.vocab_size, self.dtype = probe.shape[1], probe.dtype
        if self.vocab_size > 2**15:
            raise ValueError(f"a vocabulary of {self.vocab_size} symbols does not fit the int16 prefix")
        self._symbols = torch.arange(self.vocab_size, device=self.device).view(1, 1, -1)
        self._eos_column = (torch.arange(self.vocab_size, device=self.device) == eos_id).unsqueeze(0)
        self._positions = torch.arange(self.max_prefix, device=self.device).unsqueeze(1)
        self._slots: dict[int, _Slot] = {}
        self.eager_chunks = 0  # chunks run without a graph while capture is on (not warmed up)

    # ------------------------------------------------------------ public

    def bucket(self, rows: int) -> int:
        """The bucket a batch of `rows` is padded to (larger batches are cut in largest buckets)."""
        return next((b for b in self.buckets if b >= rows), self.buckets[-1])

    @torch.inference_mode()
    def warm_up(self, sizes: Sequence[int] | None = None, modes: Sequence[str] = MODES,
                record: bool = False) -> int:
        """Allocate the buckets holding `sizes` rows (default: all) and, on CUDA, capture the
        load graph and every chunk of `modes` (plus GREEDY with recording if `record`).
        Returns the number of graphs captured."""
        if not self.capture:  # eager: buckets are allocated when first used
            return 0
        buckets = sorted({self.bucket(n) for n in sizes} if sizes is not None else self.buckets)
        variants = [(m, False) for m in modes] + ([(GREEDY, True)] if record else [])
        captured = 0
        for size in buckets:
            slot = self._slot(size)
            if record:
                slot.recording(self)
            captured += self._capture(slot, variants)
        return captured

    @torch.inference_mode()
    def run(self, batch: RowBatch, *, start: Start | None = None, record: bool = False,
            on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> Decoded:
        """Decode `batch`. start: token/hidden per row on the device (a session continuing a name;
        its name_length goes in batch.name_length). on_step(t, ids, active) as in decode (a host
        read per step: those chunks run eagerly)."""
        n = len(batch)
        if n == 0:
            return Decoded(torch.zeros(0, 0, dtype=torch.long, device=self.device), 0, 0, 0)
        if n > self.buckets[-1]:
            if start is not None or record or on_step is not None:
                raise ValueError(f"{n} rows with start/record/on_step: at most {self.buckets[-1]} per run")
            return self._run_in_pieces(batch)
        steps = int(batch.max_length.max())
        if steps > self.max_steps:
            raise ValueError(f"max_length {steps} is over this decoder's max_steps ({self.max_steps})")
        longest_prefix = int(batch.prefix_len.max())
        if longest_prefix > self.max_prefix:
            raise ValueError(f"a prefix of {longest_prefix} symbols is over this decoder's max_prefix "
                             f"({self.max_prefix})")
        mode = self.mode(batch)
        slot = self._slot(self.bucket(n))
        if record:
            slot.recording(self)
        if slot.copied is not None:
            slot.copied.synchronize()  # a run without host reads may still be copying `host`
        self._pack(slot, batch)
        if slot.packed is not slot.host:
            slot.packed.copy_(slot.host, non_blocking=True)  # the one host-to-device copy
            slot.copied.record()
        graphed = self.capture and on_step is None
        self._replay_or_run(slot, ("load",), graphed, lambda: self._load(slot))
        if start is not None:
            slot.token[:n].copy_(start.token)
            slot.hidden[:, :n].copy_(start.hidden)
        prefix_steps = self.max_prefix if graphed else longest_prefix
        all_sample = not graphed and bool((batch.temperature > 0).all())
        compact = not graphed and self.compact and not record and on_step is None
        chunks_needed, chunks, syncs = math.ceil(steps / self.chunk), 0, 0
        state: _Slot | _Live = slot
        for k in range(chunks_needed):
            self._replay_or_run(slot, (mode, record, k), graphed,
                                lambda s=state, k=k: self._chunk(s, k, mode, record, prefix_steps, on_step, all_sample))
            chunks += 1
            if k + 1 < chunks_needed:
                syncs += 1
                if bool(state.all_done):  # the host read of this chunk
                    break
                if compact:
                    state = _Live.shrink(state, (k + 1) * self.chunk)
        if isinstance(state, _Live):
            state.flush(slot, chunks * self.chunk, self.eos_id)
        ran = min(steps, chunks * self.chunk)
        ids = slot.out[:ran, :n].t().contiguous()
        logits = slot.rec_logits[:ran, :n] if record else None
        hidden = slot.rec_hidden[:ran, :, :n] if record else None
        return Decoded(ids, ran, chunks, syncs, logits, hidden)

    def decode(self, rows: Sequence[Row], *, start: Start | None = None,
               on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> list[list[int]]:
        """model.decode.decode's answer: each row's ids, prefix included, end token excluded."""
        name_lengths = start.name_length.tolist() if start is not None else None
        out = self.run(RowBatch.from_rows(rows, name_lengths), start=start, on_step=on_step)
        return self.id_lists(out.ids, rows)

    def id_lists(self, ids: torch.Tensor, rows: Sequence[Row]) -> list[list[int]]:
        """Per row, its ids up to the end token, as decode returns them (one copy to the host)."""
        return [(row[: row.index(self.eos_id)] if self.eos_id in row else row)[: r.max_length]
                for row, r in zip(ids.cpu().tolist(), rows)]

    def mode(self, batch: RowBatch) -> str:
        """As model.decode.Chooser decides: greedy unless a row samples; top-k only if a
        sampling batch has a row restricting it."""
        if not bool((batch.temperature > 0).any()):
            return GREEDY
        restricts = (batch.top_k > 0) & (batch.top_k < self.vocab_size)
        return TOP_K if bool(restricts.any()) else SAMPLE

    # ------------------------------------------------------------ the work

    def _slot(self, size: int) -> _Slot:
        if size not in self._slots:
            self._slots[size] = _Slot(size, self)
        return self._slots[size]

    def _pack(self, slot: _Slot, batch: RowBatch) -> None:
        """Rows into the host buffer, padding rows after them (greedy, cap 1), vectorised."""
        n, width = len(batch), batch.prefix.shape[1]
        prefix, fields = slot.host_prefix, slot.host_fields
        used = min(width, self.max_prefix)
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
        f = s.packed_fields
        s.prefix.copy_(s.packed_prefix.t())
        s.forced.copy_(self._positions < f[:, PREFIX_LEN])
        s.max_len.copy_(f[:, MAX_LENGTH])
        s.seed_hash.copy_(mix32(f[:, SEED]).unsqueeze(1))
        temperature = f[:, TEMPERATURE].view(torch.float64).to(torch.get_default_dtype())
        s.divisor.copy_(temperature.clamp_min(1e-6).unsqueeze(1))
        s.greedy_rows.copy_(temperature == 0)
        k, vocab = f[:, TOP_K_FIELD], self.vocab_size
        s.kth_index.copy_((torch.where((k > 0) & (k < vocab), k, vocab) - 1).unsqueeze(1))
        s.first_eos.copy_((f[:, NAME_LENGTH] == 0).unsqueeze(1) & self._eos_column)
        s.token.fill_(self.bos_id)
        s.hidden.zero_()
        s.done.zero_()

    def _chunk(self, s: _Slot | _Live, k: int, mode: str, record: bool, prefix_steps: int, on_step=None,
               all_sample: bool = False) -> None:
        """Steps k*chunk .. k*chunk + chunk - 1: decode's step body, reading and writing s.
        all_sample (eager only): no row is greedy, so skip their argmax, as decode's Chooser does."""
        first, eos = k * self.chunk, self.eos_id
        token, hidden, done = s.token, s.hidden, s.done
        # on CPU a step's noise at a time stays in cache; on a GPU a chunk's at once is fewer kernels
        at_once = 1 if self.device.type == "cpu" else self.chunk
        kth = s.kth_index if mode == TOP_K else None
        greedy_rows = None if all_sample else s.greedy_rows
        noise = None
        for j in range(self.chunk):
            t = first + j
            logits, hidden = self.step(token, hidden)
            if record:
                s.rec_logits[t].copy_(logits)
                s.rec_hidden[t].copy_(hidden)
            if t == 0:  # a name has at least one character: no end token at its first position
                logits = logits.masked_fill(s.first_eos, float("-inf"))
            if mode == GREEDY:
                token = logits.argmax(dim=1)
            else:
                if j % at_once == 0:
                    noise = gumbel_noise(s.seed_hash, t, at_once, self._symbols, self.dtype)
                token = pick(logits, s.divisor, kth, noise[j % at_once], greedy_rows)
            if t < prefix_steps:
                token = torch.where(s.forced[t], s.prefix[t], token)
            if t > 0:
                token = token.masked_fill(done, eos)
            s.out[t].copy_(token)
            if on_step is not None:
                on_step(t, token, ~done & (token != eos))
            done = done | (token == eos) | (s.max_len <= t + 1)
        s.token.copy_(token)
        s.hidden.copy_(hidden)
        s.done.copy_(done)
        s.all_done.copy_(done.all())

    def _replay_or_run(self, slot: _Slot, key: tuple, graphed: bool, work: Callable[[], None]) -> None:
        graph = slot.graphs.get(key) if graphed else None
        if graph is not None:
            graph.replay()
            return
        if graphed:
            self.eager_chunks += 1
        work()

    def _run_in_pieces(self, batch: RowBatch) -> Decoded:
        size, parts = self.buckets[-1], []
        for lo in range(0, len(batch), size):
            parts.append(self.run(batch.rows(lo, lo + size)))
        steps = max(p.steps for p in parts)
        ids = torch.cat([torch.nn.functional.pad(p.ids, (0, steps - p.steps), value=self.eos_id) for p in parts])
        return Decoded(ids, steps, sum(p.chunks for p in parts), sum(p.syncs for p in parts))

    # ------------------------------------------------------------ CUDA graphs

    def _capture(self, slot: _Slot, variants: Sequence[tuple[str, bool]]) -> int:
        """Capture slot's load graph and every chunk of `variants` (once each)."""
        todo = [(m, r, k) for m, r in variants for k in range(self.max_chunks) if (m, r, k) not in slot.graphs]
        if "load" not in slot.graphs:
            todo.insert(0, ("load",))
        P = self.max_prefix

        def work(key):
            if key == ("load",):
                return lambda: self._load(slot)
            mode, record, k = key
            return lambda: self._chunk(slot, k, mode, record, P)

        with torch.inference_mode():
            slot.graphs.update(self.graphs.capture({key: work(key) for key in todo}))
        return len(todo)


class CudaGraphs:
    """Captures work into torch.cuda.CUDAGraph objects, all in one memory pool. What a chunk
    computes depends only on its key (bucket, mode, recording, position), never on the rows, so
    a capture replays correctly for any rows packed into the slot's buffers. (Tests on CPU
    substitute an object whose "graphs" call the work again: the same replay protocol.)"""

    def __init__(self, device: torch.device):
        self.device = device
        self.pool = None

    def capture(self, works: dict) -> dict:
        if not works:
            return {}
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graphs = {}
        with _plain_torchscript():
            # warm up on a side stream (cuBLAS handles, TorchScript's first runs), as capture needs
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    for work in works.values():
                        work()
            torch.cuda.synchronize(self.device)
            # what torch.cuda.graph() does per graph, minus its gc.collect() and empty_cache():
            # hundreds of graphs are captured at load, into one pool (every value that outlives
            # a chunk is in the slot's own buffers, and replays never overlap)
            with torch.cuda.stream(side):
                for key, work in works.items():
                    graph = torch.cuda.CUDAGraph()
                    graph.capture_begin(pool=self.pool)
                    try:
                        work()
                    finally:
                        graph.capture_end()
                    graphs[key] = graph
        torch.cuda.synchronize(self.device)
        return graphs


@contextlib.contextmanager
def _plain_torchscript():
    """TorchScript without its profiling/fusing executor while capturing: a fuser compiling or
    re-specialising mid-capture would break it, and replay has no launch overhead to save."""
    with torch.jit.optimized_execution(False):
        yield
