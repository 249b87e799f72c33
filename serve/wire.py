"""The wire formats: the JSON bodies of answers and errors and the NDJSON lines of a stream (the
public HTTP API, docs/serving.md). One home for each shape, so the handler and the engine agree."""

from __future__ import annotations

import json
from dataclasses import dataclass

NDJSON = "application/x-ndjson"
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


def names_json(names: list[str]) -> str:
    return json.dumps({"names": names}, ensure_ascii=False)


def error_json(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def stream_lines(chars: list[tuple[int, str]]) -> bytes:
    """NDJSON lines for one step of a streamed request: {"index": name index, "char": c}."""
    return "".join(json.dumps({"index": j, "char": c}, ensure_ascii=False) + "\n"
                   for j, c in chars).encode("utf-8")


def stream_end(names: list[str], logprobs: list[float] | None = None) -> bytes:
    end = {"names": names, "done": True}
    if logprobs is not None:
        end["logprobs"] = [round(x, DIGITS) for x in logprobs]
    return (json.dumps(end, ensure_ascii=False) + "\n").encode("utf-8")
