"""The numpy decoding loop: the twin of model.decode for a step without torch (the ONNX step
under ONNX Runtime), and the rows' way through the one-graph greedy decoder.

Torch-free, like model.nbest, so that both the ONNX runtime (runtime/, the readers) and the
exporters' own checks (export.onnx_step, export.generate_graph) decode with this one loop: same
rows, same greedy rule, same counter-based sampling noise (core.noise) as the torch loop, so a
seeded request gives the same names on every backend (up to near-ties, docs/numerics.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from core.noise import NOISE_CHUNK, mix32, seeded_bits, to_unit_interval
from core.request import Row

__all__ = ["NOISE_CHUNK", "Chooser", "decode", "decode_greedy_graph", "decode_greedy_graph_scored"]


class Chooser:
    """numpy twin of model.decode.Chooser, with the same values (core.noise): argmax for
    temperature 0, else a Gumbel-max sample of the temperature-scaled, top-k-restricted
    distribution. What is fixed for a decode is decided once and the noise is drawn NOISE_CHUNK
    steps at a time: its hash is ~30 numpy calls, more than a step itself costs."""

    def __init__(self, rows: Sequence[Row]):
        self.sampling = any(r.temperature > 0 for r in rows)
        if not self.sampling:
            return
        temperature = np.array([r.temperature for r in rows], dtype=np.float32)
        self.greedy_rows = None if all(r.temperature > 0 for r in rows) else temperature == 0
        self.divisor = np.maximum(temperature, 1e-6)[:, None]
        self.top_k = [r.top_k for r in rows]
        self.kth_index: tuple[np.ndarray, np.ndarray] | None = None
        self.seed_hash = mix32(np.array([r.seed for r in rows], dtype=np.int64))[:, None]
        self.noise, self.noise_from = np.empty(0, dtype=np.float32), 0

    def _start(self, vocab: int) -> None:
        self.symbols = np.arange(vocab, dtype=np.int64)[None, None, :]
        if any(0 < k < vocab for k in self.top_k):  # k >= vocab (or 0) keeps every symbol
            k = np.array([min(k, vocab) if k > 0 else vocab for k in self.top_k])
            self.kth_index = (np.arange(len(k)), k - 1)

    def _noise(self, step: int) -> np.ndarray:
        """log(-log(u)) for `step`, u the uniform draw of (row seed, step, symbol)."""
        if not self.noise_from <= step < self.noise_from + len(self.noise):
            steps = np.arange(step, step + NOISE_CHUNK, dtype=np.int64)[:, None, None]
            bits = seeded_bits(self.seed_hash[None], steps, self.symbols)
            self.noise = np.log(-np.log(to_unit_interval(bits.astype(np.float32))))
            self.noise_from = step
        return self.noise[step - self.noise_from]

    def __call__(self, logits: np.ndarray, step: int) -> np.ndarray:
        if not self.sampling:
            return logits.argmax(axis=1)
        if step == 0:
            self._start(logits.shape[1])
        scaled = logits / self.divisor
        if self.kth_index is not None:
            kth = -np.sort(-scaled, axis=1)[self.kth_index][:, None]
            scaled = np.where(scaled < kth, -np.inf, scaled)
        sampled = (scaled - self._noise(step)).argmax(axis=1)
        if self.greedy_rows is None:
            return sampled
        return np.where(self.greedy_rows, logits.argmax(axis=1), sampled)


def decode(step, rows: Sequence[Row], *, bos_id: int, eos_id: int, hidden_shape: tuple[int, int]) -> list[list[int]]:
    """numpy twin of model.decode.decode (fresh names only): ids per row, end token excluded.

    A step is small, so per-call overhead (one ONNX Runtime call, each numpy call) is most of
    its cost: what is known before the loop is decided before it, and a step runs only the calls
    it needs (greedy, no prefix left,
    nobody done: step, argmax, one write, one compare, one count)."""
    batch = len(rows)
    if batch == 0:
        return []
    longest_prefix = max(len(r.prefix) for r in rows)
    prefix = np.full((longest_prefix, batch), -1, dtype=np.int64)  # [time, batch]; -1: not forced
    for i, r in enumerate(rows):
        prefix[: len(r.prefix), i] = r.prefix
    steps = max(r.max_length for r in rows)
    shortest_cap = min(r.max_length for r in rows)
    max_len = np.array([r.max_length for r in rows])
    choose = Chooser(rows)

    token = np.full(batch, bos_id, dtype=np.int64)
    hidden = np.zeros((hidden_shape[0], batch, hidden_shape[1]), dtype=np.float32)
    out = np.empty((steps, batch), dtype=np.int64)  # [time, batch]: a step writes one row
    done = None  # which rows have ended, once any has
    for t in range(steps):
        logits, hidden = step(token, hidden)
        if t == 0:  # a name has at least one character
            logits = logits.copy()
            logits[:, eos_id] = -np.inf
        token = choose(logits, t)
        if t < longest_prefix:
            token = np.where(prefix[t] >= 0, prefix[t], token)
        if done is not None:
            token[done] = eos_id
        out[t] = token
        ended = token == eos_id  # rows done earlier emit eos_id: `ended` includes them
        if t + 1 >= shortest_cap:
            ended |= max_len <= t + 1
        count = np.count_nonzero(ended)
        if count == batch:
            break
        done = ended if count else None
    result = []
    for ids, r in zip(out[: t + 1].T.tolist(), rows):
        ids = ids[: ids.index(eos_id)] if eos_id in ids else ids
        result.append(ids[: r.max_length])
    return result


def decode_greedy_graph(run: Callable, rows: Sequence[Row], *, eos_id: int) -> list[list[int]]:
    """Greedy rows through the one-graph decoder (charrnn_generate.onnx), `run(prefix [B, P],
    prefix_length [B], max_length) -> (ids, length, logprob)`: the same result as
    `decode(step, rows, ...)`, ids per row, end token excluded.
    One run with the largest cap; a row with a smaller cap is cut (greedy rows are independent)."""
    return _graph_rows(run, rows, eos_id)[0]


def decode_greedy_graph_scored(run: Callable, rows: Sequence[Row], *,
                               eos_id: int) -> tuple[list[list[int]], list[float]]:
    """`decode_greedy_graph` and each name's log-probability (the graph's `logprob` output:
    model.nbest's definition, as `model.nbest.score` gives it for the same ids).

    The graph scores a name to the end token under the run's largest cap; a row cut at its own
    smaller cap needs the end token's probability after its last character instead, so those
    rows (rare: only mixed caps where the model runs past one) are run again, grouped by cap."""
    ids, lengths, logprobs = _graph_rows(run, rows, eos_id)
    cut = [i for i, (n, r) in enumerate(zip(lengths, rows)) if n > r.max_length]
    for cap in sorted({rows[i].max_length for i in cut}):
        group = [i for i in cut if rows[i].max_length == cap]
        _, _, again = _graph_rows(run, [rows[i] for i in group], eos_id)
        for i, lp in zip(group, again):
            logprobs[i] = lp
    return ids, logprobs


def _graph_rows(run: Callable, rows: Sequence[Row], eos_id: int) -> tuple[list[list[int]], list[int], list[float]]:
    """One run of the graph with the rows' largest cap: (ids per row cut at its own cap, the
    lengths the run gave, the log-probabilities it gave).

    The whole call costs a few session.runs' worth, so the Python around it counts: prefixes
    of one length (one name, or one letter each) become the input array in one conversion."""
    if not rows:
        return [], [], []
    if any(r.temperature > 0 for r in rows):
        raise ValueError("the one-graph model decodes greedily only (temperature 0)")
    widths = [len(r.prefix) for r in rows]
    width = max(widths)
    if width and width == min(widths):
        prefix = np.array([r.prefix for r in rows], dtype=np.int64)
    else:
        prefix = np.full((len(rows), max(1, width)), eos_id, dtype=np.int64)
        for i, r in enumerate(rows):
            prefix[i, : len(r.prefix)] = r.prefix
    ids, length, logprob = run(prefix, widths, max(r.max_length for r in rows))
    lengths = length.tolist()
    return ([row[: min(n, r.max_length)] for row, n, r in zip(ids.tolist(), lengths, rows)], lengths,
            logprob.tolist())
