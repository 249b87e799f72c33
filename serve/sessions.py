"""The session store: each open session's typed text and hidden state (on the engine's device),
bounded in count and idle time, with the admission limit that keeps TorchServe's own sequence
slots from running out (a clean 429 instead of its misleading 503)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from serve.validation import RequestError


@dataclass
class SessionState:
    text: str  # what the person has typed (NFC)
    length: int  # symbols in `text`
    token: int  # next input token: the last typed symbol, or begin-of-name
    hidden: torch.Tensor  # [layers, hidden] on the engine's device: `text` minus its last symbol fed
    used: float = 0.0


class SessionStore:
    """Per-session state, bounded: at most `max_sessions` (least recently used evicted first) and
    none idle longer than `idle_seconds`. TorchServe expires its sequences without telling the
    handler, so this store must bound itself.

    With `max_open`, at most that many sessions may be *open*: used within the last
    `open_window` seconds (TorchServe's sequenceMaxIdleMSec: the time its frontend holds an
    idle sequence's slot). A session that would become open beyond that is refused (429) before
    TorchServe's own slots (maxNumSequence) run out and it answers a misleading 503. Sessions
    idle longer than the window stay resumable until `idle_seconds` but no longer count."""

    def __init__(self, max_sessions: int = 128, idle_seconds: float = 120.0,
                 clock: Callable[[], float] = time.monotonic, *, max_open: int | None = None,
                 open_window: float | None = None):
        if max_sessions < 1 or not idle_seconds > 0:
            raise ValueError("max_sessions must be >= 1 and idle_seconds > 0")
        if max_open is not None and not 1 <= max_open <= max_sessions:
            raise ValueError("max_open must be between 1 and max_sessions")
        if open_window is not None and not 0 < open_window <= idle_seconds:
            raise ValueError("open_window must be > 0 and <= idle_seconds")
        self.max_sessions, self.idle_seconds, self.clock = max_sessions, idle_seconds, clock
        self.max_open, self.open_window = max_open, open_window if open_window is not None else idle_seconds
        self._states: OrderedDict[str, SessionState] = OrderedDict()
        self.evicted = 0
        self.expired = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, sid: str) -> bool:
        return sid in self._states

    def expire(self) -> None:
        horizon = self.clock() - self.idle_seconds
        while self._states:
            oldest = next(iter(self._states.values()))
            if oldest.used >= horizon:
                break
            self._states.popitem(last=False)
            self.expired += 1

    def peek(self, sid: str) -> SessionState | None:
        """The state without marking it used (put marks it)."""
        self.expire()
        return self._states.get(sid)

    def get(self, sid: str) -> SessionState | None:
        self.expire()
        state = self._states.get(sid)
        if state is not None:
            state.used = self.clock()
            self._states.move_to_end(sid)
        return state

    def put(self, sid: str, state: SessionState) -> None:
        state.used = self.clock()
        self._states[sid] = state
        self._states.move_to_end(sid)
        while len(self._states) > self.max_sessions:
            self._states.popitem(last=False)
            self.evicted += 1

    def pop(self, sid: str) -> bool:
        return self._states.pop(sid, None) is not None

    def is_open(self, sid: str) -> bool:
        state = self._states.get(sid)
        return state is not None and state.used >= self.clock() - self.open_window

    def open_count(self) -> int:
        """Sessions used within the open window (the store is in least-recently-used order)."""
        horizon, count = self.clock() - self.open_window, 0
        for state in reversed(self._states.values()):
            if state.used < horizon:
                break
            count += 1
        return count

    def admission(self, pending: int = 0) -> RequestError | None:
        """None if one more session may open (beside `pending` ones already admitted), else the
        429 to answer, with the seconds until the least recently used open session leaves the
        window."""
        if self.max_open is None:
            return None
        count = self.open_count()
        if count + pending < self.max_open:
            return None
        self.refused += 1
        horizon = self.clock() - self.open_window
        oldest = next((s.used for s in self._states.values() if s.used >= horizon), self.clock())
        retry = max(1.0, math.ceil(oldest + self.open_window - self.clock()))
        return RequestError(f"too many open sessions: {count + pending} were used in the last "
                            f"{self.open_window:g} s and the limit is {self.max_open}; close one "
                            f'(send {{"close": true}}) or retry in {retry:g} s', 429, retry_after=retry)
