"""Build the default corpus: the IBGE census first names with their counts (data/census/),
title-cased and with their accents restored (data/accents.py): JOAO -> João.

Everything it reads ships with the repository or the pinned packages, so the corpus is the same
on every machine and needs no download.
Usage: python -m data.build_default --out artifacts/corpus.txt [--census FILE] [--changes FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.atomic import write_text_atomic
from data.accents import AccentRule, default_rule
from data.corpus import Entry, read_corpus, write_corpus
from data.sources import CENSUS_NAMES, write_source_note


def census_corpus(census: str | Path = CENSUS_NAMES, rule: AccentRule | None = None) -> list[Entry]:
    """The census names title-cased, accents restored, spellings that meet merged (counts added),
    in the census's order (most frequent first)."""
    rule = rule or default_rule()
    return rule.restore_entries(read_corpus(census, title_case=True))


def changes_table(census: str | Path, rule: AccentRule) -> str:
    """census name, spelling, source, count: every name whose accents the rule restores, for review."""
    lines = ["name\tspelling\tsource\tcount"]
    for e in read_corpus(census):
        if e.name.isascii() and " " not in e.name:
            choice = rule.choose(e.name.lower())
            if choice.source != "unchanged" and choice.spelling != e.name.lower():
                lines.append(f"{e.name}\t{rule.restore(e.name.title())}\t{choice.source}\t{e.count}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="corpus file to write (name<TAB>count lines)")
    parser.add_argument("--census", default=str(CENSUS_NAMES), help="the census list (name<TAB>count, upper case)")
    parser.add_argument("--changes", default=None,
                        help="also write every restored spelling here (census name, spelling, source, count)")
    args = parser.parse_args(argv)
    rule = default_rule()
    entries = census_corpus(args.census, rule)
    write_corpus(args.out, entries)
    write_source_note(args.out, args.census)  # the model card quotes the census README through it
    accented = sum(1 for e in entries if not e.name.isascii())
    print(f"wrote {len(entries):,} names ({accented:,} with accents restored; "
          f"{sum(e.count for e in entries):,} people) to {args.out}")
    if args.changes:
        write_text_atomic(args.changes, changes_table(args.census, rule))
        print(f"wrote the restored spellings to {args.changes}")


if __name__ == "__main__":
    main()
