"""The symbol vocabulary shared by training, every export and every runtime (torch-free).

Index 0 is the boundary token, used both as begin-of-name (the first input) and as
end-of-name (the last target). Its symbol is a multi-character string, so it can never equal a
corpus character: every other symbol is exactly one character.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

BOUNDARY = "<s>"
FORMAT_VERSION = 1


class VocabError(ValueError):
    """Bad vocabulary data, or text that the vocabulary cannot encode."""


@dataclass(frozen=True)
class Vocab:
    symbols: tuple[str, ...]
    bos_id: int = 0
    eos_id: int = 0

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            raise VocabError("vocabulary symbols are not unique")
        for special in (self.bos_id, self.eos_id):
            if not 0 <= special < len(self.symbols) or len(self.symbols[special]) == 1:
                raise VocabError(f"special token id {special} must name a multi-character symbol")
        chars = [s for i, s in enumerate(self.symbols) if i not in (self.bos_id, self.eos_id)]
        if any(len(s) != 1 for s in chars):
            raise VocabError("every non-special symbol must be a single character")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Vocab:
        chars = sorted({ch for name in names for ch in name})
        return cls((BOUNDARY, *chars))

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def characters(self) -> list[str]:
        return [s for i, s in enumerate(self.symbols) if i not in (self.bos_id, self.eos_id)]

    def encode(self, text: str) -> list[int]:
        """Character ids of `text`; a character outside the vocabulary is an error naming it."""
        index = self._index  # type: ignore[attr-defined]
        # special symbols are multi-character, so a single character can never hit one
        missing = sorted({ch for ch in text if ch not in index})
        if missing:
            shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in missing)
            raise VocabError(f"characters not in the vocabulary: {shown}")
        return [index[ch] for ch in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` up to the first end token."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i != self.bos_id:
                out.append(self.symbols[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {
            "symbols": list(self.symbols),
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "format_version": FORMAT_VERSION,
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.symbols, ensure_ascii=False).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: object) -> Vocab:
        if not isinstance(data, dict):
            raise VocabError("vocabulary must be a JSON object")
        symbols = data.get("symbols")
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise VocabError("vocabulary 'symbols' must be a list of strings")
        bos, eos = data.get("bos_id"), data.get("eos_id")
        if not isinstance(bos, int) or not isinstance(eos, int):
            raise VocabError("vocabulary 'bos_id' and 'eos_id' must be integers")
        return cls(tuple(symbols), bos, eos)
