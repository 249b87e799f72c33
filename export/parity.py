"""Check an exported step against the eager model before it may be written.

Two checks, both required:

1. Every output value, on the inputs the model meets. Eager and the export get the same
   (char, hidden) pairs: the hidden states of real decoding (greedy from every first letter and
   the empty prefix, and seeded samples), in batches of 1, 3, 64 and all of them at once (CPU
   kernels change with the batch size), plus random states over the whole (-1, 1) range a tanh or
   GRU state can take. They are compared by the parity rule below.
2. The greedy names, exactly: every first letter and the empty prefix decode to the same names
   through the export's step as through eager. This is the product's contract.

The parity rule, the project's one way to compare float results that different kernels produced
(another batch size or bucket, backend, device or CPU; docs/numerics.md says which results are
compared this way and which are exact): `|got - want| <= ATOL + RTOL * magnitude`, with magnitude
the largest |value| in that row (the last axis) of `want`. Float32 rounding grows with the size
of the numbers involved (a trained GRU's logits are large) and every kernel sums in its own
order, so a fixed absolute bound refuses correct results on machines it was never tried on; a
wrong weight, a dropped bias or a mixed-up row moves values by orders of magnitude more than
RTOL. RTOL and ATOL have one home, export/tolerance.py (torch- and numpy-free, for the one-graph
export's check); `tolerance`, `shares` and `close` apply them here (the tests too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.contract import STEP_OUTPUTS
from core.request import Row
from core.vocab import Vocab
from export.tolerance import ATOL, RTOL, allowed
from model.charrnn import CharRNN
from model.decode import decode
from model.ensemble import CharRNNEnsemble

PROBE_BATCH_SIZES = (1, 3, 64)
SAMPLED_ROWS = 16
RANDOM_ROWS = 64

# run(char int64 [B], hidden float32 [L, B, H]) -> (logits [B, V], hidden_out [L, B, H]) as numpy
Run = Callable[[torch.Tensor, torch.Tensor], tuple[np.ndarray, np.ndarray]]
# names(rows) -> each row's decoded ids through the export's step
Names = Callable[[Sequence[Row]], list[list[int]]]


class ExportMismatch(RuntimeError):
    pass


@dataclass(frozen=True)
class Probe:
    """One batch of inputs for both runtimes, with a label that says where it came from."""

    label: str
    char: torch.Tensor  # int64 [B]
    hidden: torch.Tensor  # float32 [L, B, H]


@dataclass(frozen=True)
class Parity:
    """What a passed check measured: the largest |difference| over every output value, the
    largest share of its tolerance any value used (1.0 = at the limit), and the number of greedy
    names compared."""

    max_abs: float
    max_share: float
    names: int

    def __str__(self) -> str:
        return (f"max |difference| from eager {self.max_abs:.2e} ({self.max_share:.1%} of the tolerance), "
                f"{self.names} greedy names equal")


def tolerance(want, rounding: float = 0.0) -> np.ndarray:
    """The parity rule's allowed |difference| for each element of `want` (array, list, float or
    CPU tensor): ATOL + RTOL x the largest finite |value| in its row (the last axis; a scalar is
    its own row), plus `rounding`, the grid the values were rounded to (answers sent or printed
    with a fixed number of digits)."""
    want = np.asarray(want, dtype=np.float64)
    finite = np.where(np.isfinite(want), np.abs(want), 0.0)
    magnitude = finite if finite.ndim == 0 or finite.size == 0 else \
        np.broadcast_to(finite.max(axis=-1, keepdims=True), finite.shape)
    return allowed(magnitude) + rounding


def shares(want, got, rounding: float = 0.0) -> np.ndarray:
    """|got - want| / tolerance for each element (<= 1: within the parity rule). An infinity must
    be the same infinity (a masked logit), or its share is infinite, as is any NaN's. Shapes must
    be equal (ValueError)."""
    want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if want.shape != got.shape:
        raise ValueError(f"shapes differ: got {got.shape}, want {want.shape}")
    finite = np.isfinite(want) & np.isfinite(got)
    diff = np.abs(np.subtract(got, want, out=np.zeros_like(want), where=finite))
    share = diff / tolerance(want, rounding)
    return np.where(finite | (want == got), share, np.inf)


def close(want, got, rounding: float = 0.0) -> bool:
    """Whether `got` is `want` by the parity rule: the same shape, every element within its tolerance."""
    try:
        share = shares(want, got, rounding)
    except ValueError:
        return False
    return bool((share <= 1.0).all())


def greedy_rows(vocab: Vocab) -> list[Row]:
    """The empty prefix and every first letter: the names the greedy check compares."""
    return [Row(())] + [Row(tuple(vocab.encode(ch))) for ch in vocab.characters]


def decoding_states(model: CharRNN | CharRNNEnsemble, vocab: Vocab, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (input char, hidden) pair eager decoding feeds its step: greedy from every first
    letter and the empty prefix, and SAMPLED_ROWS seeded samples. Returns (char [N], hidden [L, N, H])."""
    chars: list[torch.Tensor] = []
    hiddens: list[torch.Tensor] = []

    def recording_step(char: torch.Tensor, hidden: torch.Tensor):
        chars.append(char.clone())
        hiddens.append(hidden.clone())
        return model.step(char, hidden)

    rows = greedy_rows(vocab) + [Row((), temperature=1.0, seed=seed + i) for i in range(SAMPLED_ROWS)]
    decode(recording_step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
           hidden_shape=(model.num_layers, model.hidden_size))
    return torch.cat(chars), torch.cat(hiddens, dim=1)


def probes(model: CharRNN | CharRNNEnsemble, vocab: Vocab, seed: int = 0) -> list[Probe]:
    """The batches both runtimes are fed (module docstring, check 1)."""
    model = model.cpu().eval()
    char, hidden = decoding_states(model, vocab, seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(char), generator=generator)
    out = []
    for batch in PROBE_BATCH_SIZES:
        pick = order[:batch]
        out.append(Probe(f"decoding states, batch {len(pick)}", char[pick], hidden[:, pick]))
    out.append(Probe(f"all {len(char)} decoding states in one batch", char, hidden))
    random_char = torch.randint(0, model.vocab_size, (RANDOM_ROWS,), generator=generator)
    random_hidden = torch.rand(model.num_layers, RANDOM_ROWS, model.hidden_size, generator=generator) * 2 - 1
    out.append(Probe(f"random states in (-1, 1), batch {RANDOM_ROWS}", random_char, random_hidden))
    return out


def compare(want: np.ndarray, got: np.ndarray, output: str, where: str, what: str) -> tuple[float, float]:
    """Check one output against eager's (module docstring); returns (max |difference|, largest
    share of the tolerance used). Raises ExportMismatch naming the output, the batch, the worst
    element, the difference and the tolerance with the magnitude it was derived from."""
    got = np.asarray(got)
    if got.shape != want.shape:
        raise ExportMismatch(f"{what}: {output} has shape {got.shape}, eager {want.shape} ({where}); not written")
    if not np.isfinite(got).all():
        raise ExportMismatch(f"{what}: {output} has non-finite values ({where}); not written")
    limit, share = tolerance(want), shares(want, got)
    magnitude = np.broadcast_to(np.abs(want).max(axis=-1, keepdims=True), want.shape)
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    worst = np.unravel_index(int(np.argmax(share)), share.shape)
    if share[worst] > 1.0:
        index = (f"layer {worst[0]}, row {worst[1]}, unit {worst[2]}" if len(worst) == 3
                 else f"row {worst[0]}, symbol {worst[1]}")
        raise ExportMismatch(
            f"{what}: {output} differs from eager on {where} at {index}: |difference| {diff[worst]:.3g} "
            f"(eager {want[worst]:.6g}, export {got[worst]:.6g}) > tolerance {limit[worst]:.3g} "
            f"= {ATOL:g} + {RTOL:g} x {magnitude[worst]:.3g} (the largest |value| in that row of eager's "
            f"{output}); not written")
    return float(diff.max()), float(share.max())


def check(model: CharRNN | CharRNNEnsemble, vocab: Vocab, run: Run, names: Names, what: str, seed: int = 0) -> Parity:
    """Both checks of the module docstring for one export; raises ExportMismatch on any failure."""
    model = model.cpu().eval()
    max_abs = max_share = 0.0
    with torch.inference_mode():
        for probe in probes(model, vocab, seed):
            want_logits, want_hidden = (t.numpy() for t in model.step(probe.char, probe.hidden))
            got_logits, got_hidden = run(probe.char, probe.hidden)
            for output, want, got in zip(STEP_OUTPUTS, (want_logits, want_hidden), (got_logits, got_hidden)):
                a, s = compare(want, got, output, probe.label, what)
                max_abs, max_share = max(max_abs, a), max(max_share, s)
    rows = greedy_rows(vocab)
    want_ids = decode(model.step, rows, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                      hidden_shape=(model.num_layers, model.hidden_size))
    got_ids = names(rows)
    for row, want, got in zip(rows, want_ids, got_ids, strict=True):
        if want != got:
            raise ExportMismatch(f"{what}: the greedy name for prefix {vocab.decode(row.prefix)!r} is "
                                 f"{vocab.decode(got)!r}, eager's is {vocab.decode(want)!r}; "
                                 f"{parting(model, vocab, want, got)}; not written")
    return Parity(max_abs, max_share, len(rows))


def parting(model: CharRNN | CharRNNEnsemble, vocab: Vocab, want: list[int], got: list[int]) -> str:
    """Where two greedy decodes of one row part, and eager's margin there between the two
    symbols chosen: within the parity rule of both logits it is a near-tie, which float rounding
    decides (docs/numerics.md), not necessarily a bug."""
    t = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    a, b = (ids[t] if t < len(ids) else vocab.eos_id for ids in (want, got))
    hidden = model.init_hidden(1)
    with torch.inference_mode():
        for token in [vocab.bos_id, *want[:t]]:
            logits, hidden = model.step(torch.tensor([token]), hidden)
    logits = logits[0].numpy()
    margin, allowed = float(logits[a] - logits[b]), 2 * float(tolerance(logits[None])[0, 0])
    symbol = {s: "the end" if s == vocab.eos_id else repr(vocab.symbols[s]) for s in (a, b)}
    verdict = "a near-tie that float rounding decides (docs/numerics.md)" if abs(margin) <= allowed else \
        "more than rounding explains"
    return (f"they part at character {t + 1}, where eager's logit for {symbol[a]} exceeds that for {symbol[b]} "
            f"by {margin:.3g} against twice the parity tolerance {allowed:.3g}: {verdict}")
