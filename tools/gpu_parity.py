"""GPU names against the CPU's, route by route, for `make gpu-check` (tools.gpu_check).

CPU and GPU float32 differ in the last bits (cuBLAS against MKL, libdevice against SLEEF), so a
name can part at a near-tie: two candidates whose scores are within that rounding of each other.
Where a GPU name differs from the CPU's, this finds the first position where they part and, on
each device, recomputes the scores the choice was made from there (the logits, or for a sampled
row its scaled, top-k restricted logits minus the row's Gumbel noise: model.choose's rule) from
the common prefix, and reports the two devices' best two candidates and the gap between them.

What "the same names on CPU and GPU" promises (docs/gpu.md): every row gets the same name on
both devices, except that at a near-tie the devices may choose differently (and the rest of the
name follows from that choice). A difference is a near-tie when, on both devices, the two best
candidates are the two symbols the devices chose and the gap between them is within TIE of the
best score; any other difference is a bug, and gpu-check fails on it. Log-probabilities of the
same name agree within LOGPROB_TOLERANCE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from core.request import Row
from core.vocab import Vocab
from model.batch import RowBatch
from model.choose import divisors, gumbel_noise, restricting, seed_hashes, step_hashes
from model.chunked import ChunkedDecoder

# a gap below TIE x max(1, |best score|) is within the float32 rounding of a step on two devices:
# a step's logits are sums of a few hundred float32 products (about 1e-7 relative each), and a
# name's hidden state carries such differences over a few dozen steps; real gaps are far larger
TIE = 1e-4
# log-probabilities: float64 sums over a name's steps of the log-softmax of each device's float32 logits
LOGPROB_TOLERANCE = {"rel_tol": 1e-4, "abs_tol": 1e-5}


@dataclass
class Difference:
    """Where one row's names part: its index, a label (e.g. "request 3, name 1"), the position,
    each device's symbol there, and per device its best two candidates and their gap."""

    row: int
    label: str
    position: int
    chosen: dict[str, str]
    top2: dict[str, list[tuple[str, float]]]
    gap: dict[str, float]
    spread: float  # the largest difference between the two devices' scores there
    near_tie: bool

    def line(self) -> str:
        devices = " / ".join(f"{d} {self.chosen[d]!r}" for d in self.chosen)
        tops = "; ".join(f"{d} top-2 {', '.join(f'{s!r} {v:.7g}' for s, v in self.top2[d])} (gap {self.gap[d]:.3g})"
                         for d in self.top2)
        verdict = "a near-tie" if self.near_tie else "NOT a near-tie: a bug"
        return (f"row {self.row} ({self.label}), position {self.position}: {devices}; {tops}; the devices' "
                f"scores differ by up to {self.spread:.3g} there: {verdict}")


@dataclass
class Verdict:
    """One route's comparison: names compared, their differences, log-probabilities that
    disagree (names equal), and any other check of the route (statuses, streamed text)."""

    route: str
    names: int
    differences: list[Difference] = field(default_factory=list)
    logprobs: int = 0  # log-probabilities compared
    logprob_mismatches: int = 0
    max_logprob_diff: float = 0.0
    other_checks: list[str] = field(default_factory=list)  # what failed besides names

    @property
    def ok(self) -> bool:
        return not self.other_checks and not self.logprob_mismatches and all(d.near_tie for d in self.differences)

    def summary(self) -> str:
        ties = sum(d.near_tie for d in self.differences)
        same = "GPU names == CPU names" if not self.differences else \
            f"{len(self.differences)} of them differ ({ties} near-ties)"
        lps = f"; log-probabilities: {self.logprobs - self.logprob_mismatches}/{self.logprobs} agree " \
              f"(largest difference {self.max_logprob_diff:.2g})" if self.logprobs else ""
        other = "; " + "; ".join(self.other_checks) if self.other_checks else ""
        return f"{self.route}: {self.names} names, {same}{lps}{other}"

    def row(self) -> list:
        """Its row of the result page's parity table."""
        ties = sum(d.near_tie for d in self.differences)
        lps = f"{self.logprobs - self.logprob_mismatches}/{self.logprobs}" if self.logprobs else "-"
        return [self.route, self.names, len(self.differences), ties, lps,
                "; ".join(self.other_checks) or "-", "ok" if self.ok else "FAILED"]


PAGE_HEADER = ["route", "names", "differ", "near-ties", "log-probabilities agree", "other checks", "verdict"]


class Parity:
    """Compares names decoded on the GPU and on the CPU by the same step (per device:
    (step, device)), diagnosing each difference (see the module docstring)."""

    def __init__(self, vocab: Vocab, hidden_shape: tuple[int, int], steps: dict[str, tuple]):
        self.vocab, self.hidden_shape, self.steps = vocab, tuple(hidden_shape), steps

    def compare(self, route: str, got: dict[str, Sequence[str]], rows: Sequence[Row], *,
                labels: Sequence[str] | None = None, logprobs: dict[str, Sequence[float]] | None = None,
                steps: dict[str, tuple] | None = None) -> Verdict:
        """got: device -> one name per row (rows: what each name was decoded from, core.request.Row);
        logprobs: device -> one per row (compared where the names are equal); steps: the steps
        that decoded them, when not the default ones (bulk generation's table step)."""
        (a, names_a), (b, names_b) = got.items()
        if not len(names_a) == len(names_b) == len(rows):
            counts = f"{len(names_a)} {a} names, {len(names_b)} {b} names for {len(rows)} rows"
            return Verdict(route, len(rows), other_checks=[counts])
        verdict = Verdict(route, len(rows))
        for i, (x, y) in enumerate(zip(names_a, names_b)):
            if x != y:
                label = labels[i] if labels is not None else f"row {i}"
                verdict.differences.append(self.diagnose(i, label, rows[i], {a: x, b: y}, steps or self.steps))
            elif logprobs is not None:
                lx, ly = logprobs[a][i], logprobs[b][i]
                verdict.logprobs += 1
                verdict.max_logprob_diff = max(verdict.max_logprob_diff, abs(lx - ly))
                verdict.logprob_mismatches += not math.isclose(lx, ly, **LOGPROB_TOLERANCE)
        return verdict

    def diagnose(self, index: int, label: str, row: Row, names: dict[str, str], steps: dict[str, tuple]) -> Difference:
        vocab = self.vocab
        ids = {d: vocab.encode(n) for d, n in names.items()}
        (a, ia), (b, ib) = ids.items()
        p = next((t for t, (x, y) in enumerate(zip(ia, ib)) if x != y), min(len(ia), len(ib)))
        chosen = {d: (i[p] if p < len(i) else vocab.eos_id) for d, i in ids.items()}
        scores = {d: self.decision_scores(*steps[d], row, ia[:p], p) for d in ids}
        top2, gap, near = {}, {}, True
        for d, s in scores.items():
            values, symbols = s.topk(2)
            top2[d] = [(self.symbol(int(v)), float(x)) for x, v in zip(values, symbols)]
            gap[d] = float(values[0] - values[1])
            near &= set(symbols.tolist()) == {chosen[a], chosen[b]} and gap[d] <= TIE * max(1.0, abs(float(values[0])))
        finite = torch.isfinite(scores[a]) & torch.isfinite(scores[b])
        spread = float((scores[a] - scores[b])[finite].abs().max()) if bool(finite.any()) else math.inf
        return Difference(index, label, p, {d: self.symbol(c) for d, c in chosen.items()}, top2, gap, spread, near)

    def symbol(self, i: int) -> str:
        return "<end>" if i == self.vocab.eos_id else self.vocab.symbols[i]

    @torch.inference_mode()
    def decision_scores(self, step, device, row: Row, common: Sequence[int], p: int) -> torch.Tensor:
        """What the row's symbol at position p is chosen from (its argmax), on `device`, after
        feeding `common` (the p symbols both devices agree on): float64 [V] on the host."""
        vocab, dev = self.vocab, torch.device(device)
        decoder = ChunkedDecoder(step, bos_id=vocab.bos_id, eos_id=vocab.eos_id, hidden_shape=self.hidden_shape,
                                 device=dev, buckets=(1,), max_steps=p + 1, max_prefix=max(p, 1), capture=False,
                                 compact=False)
        fed = Row(tuple(common), p + 1, row.temperature, row.top_k, row.seed)
        logits = decoder.run(RowBatch.from_rows([fed]), record=True).logits[p, 0]
        if p == 0:  # no name is empty: the end token is out at the first position
            logits = logits.masked_fill(torch.arange(len(logits), device=dev) == vocab.eos_id, float("-inf"))
        if row.temperature == 0:
            return logits.double().cpu()
        temperature = torch.tensor([float(row.temperature)], dtype=torch.float64, device=dev).to(logits.dtype)
        scaled = logits / divisors(temperature)[0]
        vocab_size = len(logits)
        if bool(restricting(torch.tensor([row.top_k]), vocab_size)[0]):
            kth = scaled.sort(descending=True).values[row.top_k - 1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        seed_hash = seed_hashes(torch.tensor([row.seed], dtype=torch.long, device=dev))
        noise = gumbel_noise(seed_hash, step_hashes(p, 1, vocab_size, dev), logits.dtype)[0, 0]
        return (scaled - noise).double().cpu()
