"""Typing sessions as bounded caches that any request rebuilds from its text.

A session's answer (next characters, greedy completion, top completions) is a function of its
text alone, and the state behind it (the hidden state after a name of at most `max_prefix`
characters) is cheap to recompute. So nothing here is a scarce slot whose loss is an error:

- `SessionTexts`: session id -> the text typed so far, so that `append` (only the new
  characters) works on the server that saw the session's previous request. LRU by count, idle
  expiry. A request with `text` never needs it: eviction, a restart or another replica cost
  nothing but that `append` alone is then refused (404, "send 'text'").
- `StateCache`: text -> the hidden state to continue from it, in one preallocated tensor on the
  engine's device (`slots` x [layers, hidden]: the memory bound is its size). Keyed by text, so
  sessions typing the same prefix share it; a text not cached continues from its longest
  cached prefix.
- `AnswerCache`: (text, top_k, max_length, completions) -> the answer's JSON (without the
  session id), LRU by bytes. The top completions come from an exact n-best search, most of
  what computing an answer costs, and type-ahead traffic repeats its prefixes (everyone
  typing "Ma" asks the same question).

All three are exact: a hit gives the bytes a fresh computation would give.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from serve.validation import RequestError

# Python's cost of one cache entry beyond its strings: the OrderedDict node and hash slot, the
# key tuple and its small ints (tests/test_reliability_sessions.py checks with tracemalloc that
# the accounted bytes stay above what is really allocated)
ENTRY_OVERHEAD = 256


class SessionTexts:
    """session id -> text, at most `max_sessions` (least recently used dropped first), none idle
    longer than `idle_seconds`."""

    def __init__(self, max_sessions: int = 100_000, idle_seconds: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        if max_sessions < 1 or not idle_seconds > 0:
            raise ValueError("sessions: max must be >= 1 and idle_seconds > 0")
        self.max_sessions, self.idle_seconds, self.clock = max_sessions, idle_seconds, clock
        self._texts: OrderedDict[str, tuple[str, float]] = OrderedDict()  # sid -> (text, last used)
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._texts)

    def __contains__(self, sid: str) -> bool:
        return sid in self._texts

    def expire(self) -> None:
        horizon = self.clock() - self.idle_seconds
        while self._texts:
            _, used = next(iter(self._texts.values()))
            if used >= horizon:
                break
            self._texts.popitem(last=False)
            self.expired += 1

    def get(self, sid: str) -> str | None:
        self.expire()
        entry = self._texts.get(sid)
        return None if entry is None else entry[0]

    def put(self, sid: str, text: str) -> None:
        self._texts[sid] = (text, self.clock())
        self._texts.move_to_end(sid)
        while len(self._texts) > self.max_sessions:
            self._texts.popitem(last=False)
            self.evicted += 1

    def pop(self, sid: str) -> bool:
        return self._texts.pop(sid, None) is not None

    def nbytes(self) -> int:
        """What the entries hold, as the AnswerCache counts it (strings plus ENTRY_OVERHEAD)."""
        return sum(sys.getsizeof(sid) + sys.getsizeof(text) + ENTRY_OVERHEAD
                   for sid, (text, _) in self._texts.items())


class StateCache:
    """text -> the state to continue a name from it: the hidden state after feeding begin-of-name
    and all of the text but its last symbol (which is the next input), as the decoder's `Start`
    takes it. One tensor of `slots` states on `device`, least recently used slot reused first."""

    def __init__(self, slots: int, hidden_shape: tuple[int, int], device: torch.device | str = "cpu"):
        if slots < 1:
            raise ValueError("the state cache needs at least one slot")
        self.slots = slots
        self.states = torch.zeros(slots, *hidden_shape, device=device)
        self._where: OrderedDict[str, int] = OrderedDict()  # text -> slot, least recently used first
        self._free = list(range(slots - 1, -1, -1))
        self.hits = 0  # texts found whole
        self.partial = 0  # texts continued from a shorter cached prefix
        self.misses = 0  # texts fed from begin-of-name

    @classmethod
    def of_size(cls, max_bytes: int, hidden_shape: tuple[int, int], device: torch.device | str = "cpu") -> StateCache:
        per_state = hidden_shape[0] * hidden_shape[1] * 4  # float32
        return cls(max(1, max_bytes // per_state), hidden_shape, device)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, text: str) -> bool:
        return text in self._where

    @property
    def nbytes(self) -> int:
        return self.states.element_size() * self.states.nelement()

    def longest(self, text: str) -> tuple[str, int | None]:
        """The longest cached prefix of `text` (`text` itself included) and its slot, or ("", None)."""
        for end in range(len(text), 0, -1):
            slot = self._where.get(text[:end])
            if slot is not None:
                self._where.move_to_end(text[:end])
                if end == len(text):
                    self.hits += 1
                else:
                    self.partial += 1
                return text[:end], slot
        self.misses += 1
        return "", None

    def gather(self, slots: Sequence[int]) -> torch.Tensor:
        """[len(slots), layers, hidden]: a copy, so later puts cannot change it."""
        index = torch.tensor(list(slots), dtype=torch.long, device=self.states.device)
        return self.states.index_select(0, index)

    def put_many(self, texts: Sequence[str], hidden: torch.Tensor) -> None:
        """Store hidden[i] ([layers, hidden]) as the state of texts[i] (the empty text is never
        stored: it is the zero state)."""
        wanted = {text: row for row, text in enumerate(texts) if text}  # one row per text
        # at most `slots` of them, so that a slot is never reused within one call
        wanted = dict(list(wanted.items())[-self.slots:])
        slots, rows = [], []
        for text, row in wanted.items():
            slot = self._where.pop(text, None)
            if slot is None:
                # a free slot, else the least recently used one (never one of this call's texts:
                # they were just moved to the most recently used end)
                slot = self._free.pop() if self._free else self._where.popitem(last=False)[1]
            self._where[text] = slot
            slots.append(slot)
            rows.append(row)
        if slots:
            index = torch.tensor(slots, dtype=torch.long, device=self.states.device)
            self.states.index_copy_(0, index, hidden[torch.tensor(rows, device=hidden.device)].to(self.states.dtype))

    def clear(self) -> None:
        """Empty, with its counters at zero."""
        self._where.clear()
        self._free = list(range(self.slots - 1, -1, -1))
        self.hits = self.partial = self.misses = 0


class AnswerCache:
    """key -> an answer's JSON text, at most `max_bytes` of it as `entry_bytes` counts (least
    recently used dropped first). max_bytes 0 turns it off."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError("the answer cache's size must be >= 0")
        self.max_bytes = max_bytes
        self._answers: OrderedDict[tuple, str] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._answers)

    @staticmethod
    def entry_bytes(key: tuple, answer: str) -> int:
        return sys.getsizeof(key[0]) + sys.getsizeof(answer) + ENTRY_OVERHEAD

    def get(self, key: tuple) -> str | None:
        answer = self._answers.get(key)
        if answer is None:
            self.misses += 1
            return None
        self._answers.move_to_end(key)
        self.hits += 1
        return answer

    def put(self, key: tuple, answer: str) -> None:
        size = self.entry_bytes(key, answer)
        if size > self.max_bytes:
            return
        old = self._answers.pop(key, None)
        if old is not None:
            self.nbytes -= self.entry_bytes(key, old)
        self._answers[key] = answer
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            k, v = self._answers.popitem(last=False)
            self.nbytes -= self.entry_bytes(k, v)
            self.evicted += 1

    def clear(self) -> None:
        """Empty, with its counters at zero."""
        self._answers.clear()
        self.nbytes = self.hits = self.misses = self.evicted = 0


class SessionStore:
    """The three parts together, as the engine and the handler's model config set them up:
    model-config.yaml `handler.sessions` = {max, idle_seconds, state_cache_mib, answer_cache_mib}."""

    def __init__(self, max_sessions: int = 100_000, idle_seconds: float = 3600.0, *, state_cache_mib: float = 8,
                 answer_cache_mib: float = 32, clock: Callable[[], float] = time.monotonic):
        if state_cache_mib <= 0:
            raise ValueError("sessions: state_cache_mib must be > 0")
        self.texts = SessionTexts(max_sessions, idle_seconds, clock)
        self.state_cache_bytes = int(state_cache_mib * 2**20)
        self.answers = AnswerCache(int(answer_cache_mib * 2**20))
        self._states: StateCache | None = None
        self._shape: tuple[tuple[int, int], torch.device] | None = None  # set by the engine (attach)

    @classmethod
    def from_config(cls, config: dict | None) -> SessionStore:
        config = dict(config or {})
        known = {"max", "idle_seconds", "state_cache_mib", "answer_cache_mib"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown handler.sessions keys {unknown}; known: {sorted(known)} (TorchServe's "
                             "sequence slots and the open_max admission limit are gone: docs/serving.md)")
        return cls(int(config.get("max", 100_000)), float(config.get("idle_seconds", 3600)),
                   state_cache_mib=float(config.get("state_cache_mib", 8)),
                   answer_cache_mib=float(config.get("answer_cache_mib", 32)))

    def attach(self, hidden_shape: tuple[int, int], device: torch.device) -> None:
        """The engine's hidden shape and device, which size the state cache."""
        if self._shape != (tuple(hidden_shape), device):
            self._shape, self._states = (tuple(hidden_shape), device), None

    @property
    def states(self) -> StateCache:
        """The state cache, allocated at first use (a one-shot worker never allocates it)."""
        if self._states is None:
            if self._shape is None:
                raise RuntimeError("the session store is not attached to an engine")
            self._states = StateCache.of_size(self.state_cache_bytes, *self._shape)
        return self._states

    def clear_caches(self) -> None:
        if self._states is not None:
            self._states.clear()
        self.answers.clear()


class SessionAnswer(NamedTuple):
    """One session request's outcome (serve.engine.Engine.session_json)."""

    session: str  # the session id (a new one when the request had none)
    answer: str | RequestError  # the JSON body, or why it was refused
    cached: bool  # the answer came from the answer cache


def new_session_id() -> str:
    """A new session's id: random (122 bits), so that no one can guess another's session."""
    return f"s-{uuid.uuid4()}"
