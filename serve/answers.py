"""The engine's n-best glue: one-shot answers with log-probabilities, the n-best search of a
request, and a session's top completions (model.nbest over the engine's torch step).

A module of its own so that serve/engine.py only routes to it (small hooks); the answer's JSON
lives in serve/wire.py."""

from __future__ import annotations

from collections.abc import Sequence

from core.vocab import Vocab
from model import nbest
from model.nbest_torch import TorchStepper
from serve.wire import DIGITS, Answer


def searched_answers(stepper: TorchStepper, vocab: Vocab, queries: Sequence[tuple[str, int, int]], *,
                     max_expansions: int, width: int) -> list[Answer]:
    """Answers of n-best requests (prefix, num, max_length), all searched in lockstep
    (model.nbest.search_many: one step call per round for the whole batch)."""
    found = nbest.search_many(stepper, [(vocab.encode(p), n, m) for p, n, m in queries], bos_id=vocab.bos_id,
                              eos_id=vocab.eos_id, max_expansions=max_expansions, width=width)
    return [Answer([vocab.decode(i) for i in f.ids], f.logprobs, f.complete) for f in found]


def scores(stepper: TorchStepper, vocab: Vocab, names: Sequence[str]) -> list[float]:
    """Log-probabilities of decoded names, all in one batch (model.nbest.score)."""
    return nbest.score(stepper, [vocab.encode(n) for n in names], bos_id=vocab.bos_id, eos_id=vocab.eos_id)


def completions(stepper: TorchStepper, vocab: Vocab, texts: Sequence[tuple[str, int, int]], *,
                max_expansions: int, width: int) -> list[tuple[list[dict], bool]]:
    """Sessions' top whole names for (text, num, max_length) each, searched in lockstep:
    ([{"name", "logprob"}], complete) per text."""
    found = searched_answers(stepper, vocab, [(t, n, max(m, len(t), 1)) for t, n, m in texts],
                             max_expansions=max_expansions, width=width)
    return [([{"name": name, "logprob": round(lp, DIGITS)} for name, lp in zip(a.names, a.logprobs)], a.complete)
            for a in found]
