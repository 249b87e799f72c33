"""The torch decoding loop: eager on CPU (dropping ended rows as it goes), captured chunks of
steps replayed as CUDA graphs on a GPU. Every torch decode runs here: one-shot names, streamed
ones, session batches (recording each step), bulk generation, and `model.decode.decode`.

A batch's rows each have their own prefix, length cap, temperature, top-k and seed (`RowBatch`);
the step is any callable `(char [B], hidden [L, B, H]) -> (logits [B, V], hidden)`. Each step
runs `_step_rows`: the step, no end token at a name's first position, the choice (model.choose),
forced prefix characters, end tokens after a row has ended, the end test (end token or length
cap). Both paths run that one body; only the bookkeeping around it differs. Rows never influence each other, so
a row gets the same name alone, in any batch, bucket or device, except at a near-tie: its values
may round differently with the batch's shape (docs/numerics.md).

A decoder made with `score=True` also sums, in the same body, each row's log-probability of its
name (model.nbest's definition, from the logits the step already computed) and returns them in
`Decoded.scores`: a one-shot answer needs no second pass over its names. A row cut at its length
cap gets its end token's term from one more step, which the run takes when such a row exists.

- **Eager** (capture off: CPU; and streamed requests, whose per-step reads are the point): steps
  run one at a time; every `check` steps (each step on CPU, where reading a flag is free) the
  loop stops if every row has ended and, once an eighth of more than SMALL live rows have ended
  (`compact`), gathers the others, so later steps only compute live rows.
- **Captured** (CUDA, model.captured): a batch is padded to the smallest bucket (BUCKETS) that
  holds it and copied to the device in one copy; then `chunk` steps at a time replay a graph
  captured at warm-up, with one "all done?" flag read per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from core.noise import NOISE_CHUNK
from core.request import Row
from model.batch import Decoded, DecodingRows, RowBatch
from model.captured import GREEDY, MODES, SAMPLE, TOP_K, Captured
from model.choose import SMALL, Chooser, Start, Step, end_forbidden, restricting
from model.graphs import CudaGraphs

__all__ = ["BUCKETS", "GREEDY", "MODES", "SAMPLE", "TOP_K", "ChunkedDecoder", "CudaGraphs", "Decoded"]

BUCKETS = (1, 8, 64, 256, 1024, 4096, 16384, 65536)
GATHER_SHARE = 8  # eager: gather the live rows once at least 1/GATHER_SHARE of them have ended
# (never down to SMALL rows or fewer: a step of so few rows costs its operators, not its rows)


class ChunkedDecoder:
    """See the module docstring. max_steps: the longest max_length a row may ask for;
    max_prefix: the longest prefix (forced characters). capture: CUDA graphs (default: on a CUDA
    device; `graphs` substitutes the capturer). Call `warm_up` at load: on CUDA it captures the
    graphs; a chunk without a graph (not warmed up) runs eagerly, counted in `eager_chunks`, and
    is never captured on the request path. compact: eager runs drop ended rows. score: runs that
    do not record also return each row's log-probability (`Decoded.scores`)."""

    def __init__(self, step: Step, *, bos_id: int, eos_id: int, hidden_shape: tuple[int, int],
                 device: torch.device | str = "cpu", buckets: Sequence[int] = BUCKETS, max_steps: int = 64,
                 max_prefix: int = 32, chunk: int = NOISE_CHUNK, capture: bool | None = None,
                 compact: bool = True, graphs: CudaGraphs | None = None, score: bool = False):
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
        self.chunk, self.compact, self.max_steps, self.score = chunk, compact, max_steps, bool(score)
        # the positions a run can reach: max_steps, and one more where a capped row's end token is
        # scored (runs that record never score: `chunks_for`)
        self.max_chunks = math.ceil((max_steps + self.score) / chunk)
        self.max_prefix = 8 * math.ceil(max(1, min(max_prefix, max_steps)) / 8)  # keeps int64 fields aligned
        self.capture = self.device.type == "cuda" if capture is None else bool(capture)
        if self.capture and self.device.type != "cuda" and graphs is None:
            raise ValueError("capture (CUDA graphs) needs a CUDA device")
        self.graphs = graphs if graphs is not None else CudaGraphs(self.device) if self.capture else None
        if self.device.type == "cuda":
            # parity with CPU results over speed: TF32 could flip a near-tie argmax
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self._vocab: tuple[int, torch.dtype] | None = None  # from the first step (see vocab_size)
        self._captured = Captured(self) if self.capture else None

    # ------------------------------------------------------------ public

    @property
    def vocab_size(self) -> int:
        """The step's number of symbols (one probing step, unless a decode already told it)."""
        if self._vocab is None:
            with torch.inference_mode():
                probe = self.step(torch.full((1,), self.bos_id, dtype=torch.long, device=self.device),
                                  torch.zeros(self.hidden_shape[0], 1, self.hidden_shape[1], device=self.device))[0]
            self._learn_vocab(probe)
        return self._vocab[0]

    @property
    def dtype(self) -> torch.dtype:
        self.vocab_size  # noqa: B018 (probes if needed)
        return self._vocab[1]

    @property
    def eager_chunks(self) -> int:
        """Chunks run without a graph while capture is on (buckets not warmed up)."""
        return self._captured.eager_chunks if self._captured is not None else 0

    def chunks_for(self, record: bool) -> int:
        """The chunks a run can reach: recording runs (sessions) do not take the scoring step."""
        return math.ceil(self.max_steps / self.chunk) if record else self.max_chunks

    def bucket(self, rows: int) -> int:
        """The bucket a batch of `rows` is padded to (larger batches are cut in largest buckets)."""
        return next((b for b in self.buckets if b >= rows), self.buckets[-1])

    @torch.inference_mode()
    def warm_up(self, sizes: Sequence[int] | None = None, modes: Sequence[str] = MODES,
                record: bool = False) -> int:
        """On CUDA (capture on), allocate the buckets holding `sizes` rows (default: all) and
        capture the load graph and every chunk of `modes` (plus GREEDY with recording if
        `record`). Returns the number of graphs captured."""
        if self._captured is None:  # eager runs need no buffers ahead
            return 0
        return self._captured.warm_up(sizes, modes, record)

    @torch.inference_mode()
    def run(self, batch: RowBatch, *, start: Start | None = None, record: bool = False,
            on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> Decoded:
        """Decode `batch`. start: token/hidden per row on the device (a session continuing a name;
        its name_length goes in batch.name_length). record: keep each step's logits and hidden
        state. on_step(t, ids [B], active [B]) after each step: the symbols just chosen and which
        of them extend a name (streaming: a host read per step, so those runs are eager).
        A scoring decoder's runs without `record` also return each row's log-probability."""
        n = len(batch)
        if n == 0:
            return Decoded(torch.zeros(0, 0, dtype=torch.long, device=self.device), 0, 0, 0)
        steps = int(batch.max_length.max())
        if steps > self.max_steps:
            raise ValueError(f"max_length {steps} is over this decoder's max_steps ({self.max_steps})")
        longest_prefix = int(batch.prefix_len.max())
        if longest_prefix > self.max_prefix:
            raise ValueError(f"a prefix of {longest_prefix} symbols is over this decoder's max_prefix "
                             f"({self.max_prefix})")
        if self._captured is None or on_step is not None:
            return self._run_eager(batch, steps, longest_prefix, start, record, on_step)
        return self._captured.run(batch, steps, start, record)

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
        """As model.choose.Chooser decides: greedy unless a row samples; top-k only if a
        sampling batch has a row restricting it."""
        if not bool((batch.temperature > 0).any()):
            return GREEDY
        return TOP_K if bool(restricting(batch.top_k, self.vocab_size).any()) else SAMPLE

    # ------------------------------------------------------------ one step, both paths

    def _step_rows(self, s: DecodingRows, t: int, prefix_steps: int, choose: Callable[[torch.Tensor], torch.Tensor] | None,
                   record: Callable[[torch.Tensor, torch.Tensor], None] | None = None, cap_from: int = 0) -> torch.Tensor:
        """Step t of the rows in s: updates s.token, s.hidden and s.done, returns the chosen ids
        (an ended row's are end tokens, so `ids != eos` are the rows that extend a name).
        choose(logits) -> ids (None: the rows' own Chooser, s.choose). cap_from: no row's length
        cap is below it (the cap test is skipped before; 0: unknown). With s.score (float64 [B]):
        adds log_softmax(logits)[token] in float64 for the rows still s.scoring, the logits as
        chosen from (the end token masked at a name's first position), so the sum is model.nbest's
        log p(name); a row cut at its cap is scored on until its end token, one step later. No
        host reads, no data-dependent Python branches, s.done replaced (never written in place):
        the captured chunks run this very body."""
        logits, s.hidden = self.step(s.token, s.hidden)
        if record is not None:
            record(logits, s.hidden)
        if t == 0:  # a name has at least one character: no end token at its first position
            if s.first_eos is None:  # eager: what needs the vocabulary size, from the first logits
                self._first_step(s, logits)
            logits = logits.masked_fill(s.first_eos, float("-inf"))
        token = choose(logits) if choose is not None else s.choose(logits, t)
        if t < prefix_steps:
            token = torch.where(s.forced[t], s.prefix[t], token)
        if t > 0 and s.done is not None:
            token = token.masked_fill(s.done, self.eos_id)
        if s.score is not None:  # the chosen symbol's log-probability, while the row's name lasts
            term = torch.log_softmax(logits.double(), dim=1).gather(1, token.unsqueeze(1)).squeeze(1)
            s.score = s.score + torch.where(s.scoring, term, 0.0)
            s.scoring = s.scoring & (token != self.eos_id)  # its end token was the last term
        s.token = token
        # the end test: a row ends with the end token or at its length cap (max_len None: one
        # cap for all rows, the run's number of steps)
        ended = token == self.eos_id
        if s.max_len is not None and t + 1 >= cap_from:
            ended |= s.max_len <= t + 1
        s.done = ended if s.done is None else ended.logical_or_(s.done)  # in place: `ended` is new
        return token

    # ------------------------------------------------------------ eager

    def _run_eager(self, batch: RowBatch, steps: int, prefix_steps: int, start: Start | None, record: bool,
                   on_step) -> Decoded:
        dev, eos, n = self.device, self.eos_id, len(batch)
        caps = batch.max_length.to(dev)
        P = max(1, prefix_steps)
        prefix = batch.prefix[:, :P].to(dev).t()
        forced = torch.arange(P, device=dev).unsqueeze(1) < batch.prefix_len.to(dev)
        if start is None:
            token = torch.full((n,), self.bos_id, dtype=torch.long, device=dev)
            hidden = torch.zeros(self.hidden_shape[0], n, self.hidden_shape[1], device=dev)
        else:
            token, hidden = start.token.to(dev), start.hidden.to(dev)
        first = batch.name_length.to(dev) == 0
        scoring = self.score and not record
        rows = DecodingRows(token=token, hidden=hidden, prefix=prefix, forced=forced,
                     # one cap for all rows is the run's end; a scoring run goes a step past it
                     max_len=None if bool((caps == steps).all()) and not scoring else caps,
                     first_position=None if bool(first.all()) else first,
                     rule=(batch.temperature.to(dev), batch.top_k.to(dev), batch.seed.to(dev)))
        scores = None
        if scoring:
            rows.score = torch.zeros(n, dtype=torch.float64, device=dev)
            rows.scoring = torch.ones(n, dtype=torch.bool, device=dev)
            scores = torch.zeros(n, dtype=torch.float64, device=dev)
        chosen: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # per step: ids and their rows' columns
        logits_seen, hidden_seen = [], []
        keep_step = (lambda lg, h: (logits_seen.append(lg), hidden_seen.append(h))) if record else None
        compact = self.compact and not record and on_step is None and n > SMALL
        check = 1 if dev.type == "cpu" else self.chunk
        shortest = int(caps.min())
        syncs = 0
        last = steps + scoring  # a scoring run's extra step scores the end token of rows cut at their cap
        for t in range(last):
            token = self._step_rows(rows, t, prefix_steps, None, keep_step, cap_from=shortest)
            if t < steps:
                chosen.append((token, rows.index))
                if on_step is not None:
                    on_step(t, token, token != eos)
            if t + 1 < last and ((t + 1) % check == 0 or t + 1 == steps):
                syncs += 1
                ongoing = rows.scoring if scoring else ~rows.done
                if not compact:
                    if not bool(ongoing.any()):
                        break
                    continue
                live, finished = rows.token.shape[0], int((~ongoing).sum())
                if finished == live:
                    break
                if finished * GATHER_SHARE >= live > SMALL:
                    if scoring:  # the rows dropped keep their sums
                        scores.index_copy_(0, _columns(rows, dev), rows.score)
                    rows = rows.take(ongoing.nonzero().squeeze(1), t + 1 < prefix_steps)
        if scoring:
            scores.index_copy_(0, _columns(rows, dev), rows.score)
        ran = len(chosen)
        if all(index is None for _, index in chosen):  # no row was ever gathered out
            ids = torch.stack([token for token, _ in chosen], dim=1)
        else:  # ended rows' later steps are end tokens
            out = torch.full((ran, n), eos, dtype=torch.long, device=dev)
            for t, (token, index) in enumerate(chosen):
                if index is None:
                    out[t].copy_(token)
                else:
                    out[t].index_copy_(0, index, token)
            ids = out.t().contiguous()
        rec = (torch.stack(logits_seen), torch.stack(hidden_seen)) if record else (None, None)
        return Decoded(ids, ran, math.ceil(ran / self.chunk), syncs, *rec, scores=scores)

    def _first_step(self, s: DecodingRows, logits: torch.Tensor) -> None:
        """At step 0 of an eager run: the end token's column masked for rows at a name's first
        position, and the rows' Chooser, both sized by the step's vocabulary."""
        self._learn_vocab(logits)
        vocab, dtype = self._vocab
        s.first_eos = end_forbidden(s.first_position, vocab, self.eos_id, logits.device)
        s.choose = Chooser(*s.rule, vocab, dtype)

    def _learn_vocab(self, logits: torch.Tensor) -> None:
        if self._vocab is None:
            if logits.shape[1] > 2**15:
                raise ValueError(f"a vocabulary of {logits.shape[1]} symbols does not fit the int16 prefix")
            self._vocab = (logits.shape[1], logits.dtype)


def _columns(rows: DecodingRows, device: torch.device) -> torch.Tensor:
    """Each live row's column in the run's output."""
    return rows.index if rows.index is not None else torch.arange(rows.token.shape[0], device=device)
