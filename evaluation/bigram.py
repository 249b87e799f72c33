"""Character-bigram baseline: add-alpha smoothed P(next symbol | previous symbol).

It predicts the same symbols as the CharRNN (every vocabulary symbol, the boundary token as
end-of-name) from the previous one (the boundary token as begin-of-name), so its NLL in nats
per symbol is directly comparable with model.train.evaluate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from core.vocab import Vocab

# alpha is picked from this grid by the validation NLL (see choose_alpha)
ALPHA_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def transitions(name: str, vocab: Vocab) -> list[tuple[int, int]]:
    """(previous, next) symbol ids of one name: <s> c1, c1 c2, ..., cn <s>."""
    ids = [vocab.bos_id, *vocab.encode(name), vocab.eos_id]
    return list(itertools.pairwise(ids))


@dataclass(frozen=True)
class Bigram:
    counts: np.ndarray  # float64 [V, V]: counts[prev, next] over the fitting names
    alpha: float

    @classmethod
    def fit(cls, names: Iterable[str], vocab: Vocab, alpha: float) -> Bigram:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        counts = np.zeros((len(vocab), len(vocab)))
        for name in names:
            for prev, nxt in transitions(name, vocab):
                counts[prev, nxt] += 1
        return cls(counts, alpha)

    def log_probs(self) -> np.ndarray:
        """log P(next | prev) [V, V]: (count + alpha) / (row total + alpha * V)."""
        smoothed = self.counts + self.alpha
        return np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))

    def nll(self, names: Sequence[str], vocab: Vocab) -> tuple[float, int]:
        """(total NLL in nats, number of symbols) over `names`, end tokens included."""
        logp = self.log_probs()
        pairs = [p for name in names for p in transitions(name, vocab)]
        if not pairs:
            return 0.0, 0
        prev, nxt = np.array(pairs).T
        return float(-logp[prev, nxt].sum()), len(pairs)


def choose_alpha(train_names: Sequence[str], val_names: Sequence[str], vocab: Vocab,
                 grid: Sequence[float] = ALPHA_GRID) -> tuple[float, dict[float, float]]:
    """The alpha of `grid` with the lowest validation NLL per symbol, and every alpha's NLL.

    Tuning the baseline's one knob on the validation split flatters the baseline, so the model's
    margin over it is, if anything, understated.
    """
    base = Bigram.fit(train_names, vocab, 1.0)
    scores = {}
    for alpha in grid:
        total, n = Bigram(base.counts, alpha).nll(val_names, vocab)
        scores[alpha] = total / n if n else math.nan
    best = min(grid, key=lambda a: (math.isnan(scores[a]), scores[a]))
    return best, scores
