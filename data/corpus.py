"""Reading and cleaning a name corpus, and the deterministic train/validation split.

A corpus is a UTF-8 text file with one name per line, optionally `name<TAB>count`, with or
without a `name<TAB>count` header line.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from core.atomic import write_text_atomic


class CorpusError(ValueError):
    """A corpus file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    name: str
    count: int = 1


def _has_control(text: str) -> str | None:
    """Return the first control/format/unassigned character of `text`, if any."""
    for ch in text:
        if unicodedata.category(ch)[0] == "C":
            return ch
    return None


def clean_name(raw: str, title_case: bool = False) -> str:
    name = unicodedata.normalize("NFC", raw.strip())
    if title_case:
        # str.title() upper-cases after apostrophes and hyphens too: D'ARC -> D'Arc, ANA-LU -> Ana-Lu
        name = name.title()
    return name


def parse_corpus(text_bytes: bytes, source: str = "<corpus>", title_case: bool = False) -> list[Entry]:
    """Parse corpus bytes into cleaned, de-duplicated entries (first occurrence order).

    Duplicates (after NFC and optional title-casing) are merged by adding their counts.
    """
    counts: dict[str, int] = {}
    for lineno, raw_line in enumerate(text_bytes.split(b"\n"), start=1):
        raw_line = raw_line.removesuffix(b"\r")
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{source}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        if lineno == 1:
            line = line.removeprefix("\ufeff")  # tolerate a byte-order mark
        fields = line.split("\t")
        if len(fields) > 2:
            raise CorpusError(f"{source}:{lineno}: expected 'name' or 'name<TAB>count', got {len(fields)} fields")
        count = 1
        if len(fields) == 2:
            count_text = fields[1].strip()
            if lineno == 1 and fields[0].strip().lower() == "name" and count_text.lower() == "count":
                continue  # header
            if not count_text.isdigit() or int(count_text) <= 0:
                raise CorpusError(f"{source}:{lineno}: count must be a positive integer, got {fields[1]!r}")
            count = int(count_text)
        bad = _has_control(fields[0].strip())
        if bad is not None:
            raise CorpusError(
                f"{source}:{lineno}: control character U+{ord(bad):04X} "
                f"({unicodedata.name(bad, 'unnamed')}) in name {fields[0]!r}"
            )
        name = clean_name(fields[0], title_case)
        if not name:
            continue
        counts[name] = counts.get(name, 0) + count
    if not counts:
        raise CorpusError(f"{source}: no names found")
    return [Entry(name, count) for name, count in counts.items()]


def read_corpus(path: str | Path, title_case: bool = False) -> list[Entry]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read corpus ({exc.strerror})") from None
    return parse_corpus(data, source=str(path), title_case=title_case)


def format_corpus(entries: list[Entry]) -> str:
    with_counts = any(e.count != 1 for e in entries)
    if with_counts:
        return "name\tcount\n" + "".join(f"{e.name}\t{e.count}\n" for e in entries)
    return "".join(f"{e.name}\n" for e in entries)


def write_corpus(path: str | Path, entries: list[Entry]) -> None:
    write_text_atomic(path, format_corpus(entries))


def is_validation(name: str, val_fraction: float) -> bool:
    """Stable split: a name's side depends only on the name, so adding names never moves others."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


# In a corpus with counts, a name carried by at least this many times the mean count per name always
# trains: a generator that never saw Antônio or Luiz (both hash into validation) misses what users
# type first. Validation then measures the other names, the head's likelihood being the training
# loss's. Relative to the mean, so a small corpus with modest counts keeps its hash split whole.
HEAD_FACTOR = 50


def split(entries: list[Entry], val_fraction: float) -> tuple[list[Entry], list[Entry]]:
    """Training and validation names: by a hash of the name (is_validation), except that the
    commonest names of a counted corpus (HEAD_FACTOR times the mean count or more) always train."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    head = HEAD_FACTOR * sum(e.count for e in entries) / max(len(entries), 1)
    side = [e.count < head and is_validation(e.name, val_fraction) for e in entries]
    train = [e for e, v in zip(entries, side) if not v]
    val = [e for e, v in zip(entries, side) if v]
    if not train:
        raise CorpusError("the split left no training names; lower the validation fraction")
    return train, val
