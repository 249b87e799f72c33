"""Accent restoration: names as Brazilians write them, from lists that strip accents (the IBGE
census writes João as JOAO).

Each word of a name is looked up by its lower-case form without accents, and becomes:

1. the spelling of the reviewed overrides file (data/census/accent_overrides.tsv), when it lists
   the word: the fixes for the rule's misfires among the common names, each with its reason;
2. else Faker's pt_BR first name that is this word with accents (Faker's lists are written by
   hand, with accents: José, João, Antônio, Júlia...); among several, the most frequent in
   wordfreq, then the first in code-point order;
3. else wordfreq's most frequent Portuguese word that is this word with Portuguese accents,
   provided it is at least WORDFREQ_SHARE as frequent as the word without them; ties go to the
   first in code-point order;
4. else the word unchanged.

A word that already has an accent is kept as it is, and the word keeps its case pattern
(JOAO -> JOÃO, Joao -> João). Everything is local data: the pinned faker and wordfreq packages and
the overrides file; nothing is downloaded.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from data.corpus import Entry
from data.sources import ACCENT_OVERRIDES

# The letters with diacritics of Portuguese spelling, but the grave accent, which Portuguese writes
# only in contractions (à, àquele), never in a name. wordfreq's Portuguese list also holds Spanish,
# French, Italian and misspelt forms (raïssa, michèle, déjà, pietà): a candidate with any other
# mark is not a Portuguese spelling of a name.
PORTUGUESE_MARKED = frozenset("áâãéêíóôõúç")
# Informal writing drops accents, so a name's bare form is often about as frequent as its accented
# one (antonio and antônio are equally frequent in wordfreq), and more frequent when the bare form
# is also a foreign name (jessica, 4.6x jéssica). Among the census's 500 commonest names every
# accented spelling in use has at least a quarter of its bare form's frequency (Andréia 0.26,
# Nádia 0.30, Érica 0.35), while below a quarter sit mostly foreign or European spellings (Vítor,
# Jéferson, Éverton, Luíza). The misfires on either side are listed in the overrides file.
WORDFREQ_SHARE = 0.25
SOURCES = ("override", "faker", "wordfreq", "unchanged")
WORD = re.compile(r"[^\W\d_]+")  # a run of letters: names are restored word by word


class AccentError(ValueError):
    """An overrides file that cannot be used; the message names the file, line and fault."""


def strip_accents(text: str) -> str:
    """`text` without combining marks (ã -> a, ç -> c), in NFC."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _is_portuguese_spelling(word: str, bare: str) -> bool:
    """`word` is `bare` with Portuguese marks only, one code point per letter (NFC)."""
    return (word != bare and len(word) == len(bare) and bare.isascii() and bare.isalpha()
            and all(c in PORTUGUESE_MARKED for c, b in zip(word, bare) if c != b))


def read_overrides(path: str | Path = ACCENT_OVERRIDES) -> dict[str, str]:
    """word without accents (lower case) -> its spelling (lower case), from a reviewed file of
    `NAME<TAB>Spelling<TAB>reason` lines (`#` comments and blank lines skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AccentError(f"{path}: cannot read the accent overrides ({exc})") from None
    found: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        where = f"{path}:{lineno}"
        if len(fields) != 3 or not all(f.strip() for f in fields):
            raise AccentError(f"{where}: expected NAME<TAB>Spelling<TAB>reason, got {line!r}")
        name, spelling, _reason = (unicodedata.normalize("NFC", f.strip()) for f in fields)
        if not WORD.fullmatch(name) or strip_accents(name) != name:
            raise AccentError(f"{where}: {name!r} is not one word without accents")
        if strip_accents(spelling).lower() != name.lower() or not WORD.fullmatch(spelling):
            raise AccentError(f"{where}: {spelling!r} is not {name!r} with accents (an override only "
                              "restores accents, it never respells)")
        if name.lower() in found:
            raise AccentError(f"{where}: {name!r} is listed twice")
        found[name.lower()] = spelling.lower()
    return found


@dataclass(frozen=True)
class Choice:
    spelling: str  # lower case
    source: str  # one of SOURCES


class AccentRule:
    """The rule of the module docstring over given sources: `faker_names` (names or words with
    accents), `frequencies` (word -> frequency, wordfreq's Portuguese list), `overrides` (as
    read_overrides returns)."""

    def __init__(self, faker_names: Iterable[str], frequencies: Mapping[str, float],
                 overrides: Mapping[str, str] | None = None, share: float = WORDFREQ_SHARE):
        self.frequencies = frequencies
        self.overrides = dict(overrides or {})
        self.share = share
        faker: dict[str, set[str]] = {}
        for name in faker_names:
            for word in WORD.findall(unicodedata.normalize("NFC", name).lower()):
                bare = strip_accents(word)
                if _is_portuguese_spelling(word, bare):
                    faker.setdefault(bare, set()).add(word)
        self.faker = {bare: min(words, key=self._rank) for bare, words in faker.items()}
        # the best accented candidate of each bare word: highest frequency, then code-point order
        self.wordfreq: dict[str, str] = {}
        for word in frequencies:
            if word.isascii():
                continue
            bare = strip_accents(word)
            if _is_portuguese_spelling(word, bare):
                best = self.wordfreq.get(bare)
                if best is None or self._rank(word) < self._rank(best):
                    self.wordfreq[bare] = word

    def _rank(self, word: str) -> tuple[float, str]:
        return (-self.frequencies.get(word, 0.0), word)

    def choose(self, word: str) -> Choice:
        """The spelling of one word given in lower case without accents, and where it comes from."""
        if word in self.overrides:
            return Choice(self.overrides[word], "override")
        if word in self.faker:
            return Choice(self.faker[word], "faker")
        candidate = self.wordfreq.get(word)
        if candidate is not None and self.frequencies[candidate] >= self.share * self.frequencies.get(word, 0.0):
            return Choice(candidate, "wordfreq")
        return Choice(word, "unchanged")

    def restore_word(self, word: str) -> str:
        """`word` with its accents restored, in its own case pattern (JOAO -> JOÃO, Joao -> João)."""
        if not word.isascii():  # already written with accents (or not a census-style word): kept
            return word
        spelling = self.choose(word.lower()).spelling
        return "".join(s.upper() if w.isupper() else s for w, s in zip(word, spelling))

    def restore(self, name: str) -> str:
        """`name` with each word's accents restored; everything between words kept."""
        return WORD.sub(lambda m: self.restore_word(m.group()), unicodedata.normalize("NFC", name))

    def restore_entries(self, entries: Iterable[Entry]) -> list[Entry]:
        """Each entry restored; entries that become the same name are merged, their counts added
        (first-occurrence order)."""
        counts: dict[str, int] = {}
        for e in entries:
            name = self.restore(e.name)
            counts[name] = counts.get(name, 0) + e.count
        return [Entry(name, count) for name, count in counts.items()]


def faker_first_names() -> list[str]:
    """Faker's pt_BR first names (the pinned faker package)."""
    from faker.providers.person.pt_BR import Provider

    return [*Provider.first_names_female, *Provider.first_names_male]


def wordfreq_portuguese() -> dict[str, float]:
    """wordfreq's Portuguese word frequencies (the pinned wordfreq package's own data files)."""
    import wordfreq

    return wordfreq.get_frequency_dict("pt")


def default_rule(overrides: str | Path = ACCENT_OVERRIDES) -> AccentRule:
    """The rule over the pinned packages' lists and the shipped overrides file."""
    return AccentRule(faker_first_names(), wordfreq_portuguese(), read_overrides(overrides))
