"""What to decode: rows of (prefix, length cap, temperature, top-k, seed), torch-free.

Shared by the torch decoder (model.decode), the ONNX Runtime decoder (runtime/) and the
server, so that every backend turns the same request into the same rows.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from core.noise import MAX_SEED, row_seed
from core.vocab import Vocab

DEFAULT_MAX_LENGTH = 24


@dataclass(frozen=True)
class Row:
    """One name to decode. `max_length` counts characters, prefix included."""

    prefix: Sequence[int] = ()
    max_length: int = DEFAULT_MAX_LENGTH
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = all symbols
    seed: int = 0  # the row's own noise seed, used when temperature > 0

    def __post_init__(self) -> None:
        if self.max_length < max(1, len(self.prefix)):
            raise ValueError(f"max_length {self.max_length} is shorter than the prefix ({len(self.prefix)}) or < 1")
        if not self.temperature >= 0.0:  # also rejects NaN
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")


def request_seed(seed: int | None) -> int:
    """A request's seed: its own, or a fresh one for a request without one (the one place where
    seeds are drawn)."""
    return secrets.randbelow(MAX_SEED + 1) if seed is None else seed


def make_rows(vocab: Vocab, prefix: str = "", *, num: int = 1, max_length: int = DEFAULT_MAX_LENGTH,
              temperature: float = 0.0, top_k: int = 0, seed: int | None = None) -> list[Row]:
    """`num` rows for one prefix. Name i gets seed row_seed(seed, i): a request with a seed is
    reproducible, whatever it is batched with. Without a seed, sampling draws a fresh one."""
    ids = vocab.encode(unicodedata.normalize("NFC", prefix))
    seed = request_seed(seed)
    return [Row(tuple(ids), max_length, temperature, top_k, row_seed(seed, i)) for i in range(num)]

