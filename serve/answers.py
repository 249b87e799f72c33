"""The engine's n-best glue: one-shot answers with log-probabilities, the n-best search of a
request, and a session's top completions (model.nbest over the engine's torch step).

A module of its own so that serve/engine.py only routes to it (small hooks) and the answer's
JSON has one home."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from data.vocab import Vocab
from model import nbest
from model.nbest_torch import TorchStepper

DIGITS = 6  # log-probabilities in answers are rounded like the session's "p"


@dataclass(frozen=True)
class Answer:
    """One one-shot request's answer. `complete` is None unless the request ran the n-best
    search (then False when the expansion bound stopped it before `num` names were proven)."""

    names: list[str]
    logprobs: list[float]
    complete: bool | None = None

    def to_dict(self) -> dict:
        out: dict = {"names": self.names, "logprobs": [round(x, DIGITS) for x in self.logprobs]}
        if self.complete is not None:
            out["complete"] = self.complete
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def search(stepper: TorchStepper, vocab: Vocab, prefix: str, num: int, max_length: int, *,
           max_expansions: int, width: int) -> nbest.NBest:
    return nbest.search(stepper, vocab.encode(prefix), num, max_length=max_length, bos_id=vocab.bos_id,
                        eos_id=vocab.eos_id, max_expansions=max_expansions, width=width)


def searched_answer(stepper: TorchStepper, vocab: Vocab, prefix: str, num: int, max_length: int, *,
                    max_expansions: int, width: int) -> Answer:
    found = search(stepper, vocab, prefix, num, max_length, max_expansions=max_expansions, width=width)
    return Answer([vocab.decode(i) for i in found.ids], found.logprobs, found.complete)


def scores(stepper: TorchStepper, vocab: Vocab, names: Sequence[str]) -> list[float]:
    """Log-probabilities of decoded names, all in one batch (model.nbest.score)."""
    return nbest.score(stepper, [vocab.encode(n) for n in names], bos_id=vocab.bos_id, eos_id=vocab.eos_id)


def completions(stepper: TorchStepper, vocab: Vocab, text: str, num: int, max_length: int, *,
                max_expansions: int, width: int) -> tuple[list[dict], bool]:
    """A session's top `num` whole names that start with `text`: ([{"name", "logprob"}], complete)."""
    found = search(stepper, vocab, text, num, max(max_length, len(text), 1), max_expansions=max_expansions,
                   width=width)
    return ([{"name": vocab.decode(i), "logprob": round(lp, DIGITS)} for i, lp in zip(found.ids, found.logprobs)],
            found.complete)
