"""Build the default corpus: Brazilian first names, accents kept, from Faker's pt_BR provider.

Faker is pinned in pyproject.toml, so the corpus is the same on every machine and needs no
download. Usage: python -m data.build_default --out artifacts/corpus.txt
"""

from __future__ import annotations

import argparse

from faker.providers.person.pt_BR import Provider

from data.corpus import Entry, clean_name, write_corpus


def default_names() -> list[str]:
    names = {clean_name(n) for n in (*Provider.first_names_female, *Provider.first_names_male)}
    names.discard("")
    return sorted(names)  # sorted: the file is byte-identical across runs and Python versions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="corpus file to write (one name per line)")
    args = parser.parse_args(argv)
    names = default_names()
    write_corpus(args.out, [Entry(n) for n in names])
    print(f"wrote {len(names)} names to {args.out}")


if __name__ == "__main__":
    main()
