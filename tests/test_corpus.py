import hashlib
import re
import unicodedata

import pytest

from data.corpus import (
    CorpusError,
    Entry,
    is_validation,
    parse_corpus,
    read_corpus,
    split,
    write_corpus,
)
from data.sources import CENSUS_DIR, CENSUS_NAMES


def test_plain_lines_are_cleaned_nfc_stripped_and_deduplicated():
    decomposed = unicodedata.normalize("NFD", "João")
    entries = parse_corpus(f"  João \n\n{decomposed}\nAna\n   \nAna\n".encode())
    assert entries == [Entry("João", 2), Entry("Ana", 2)]
    assert unicodedata.is_normalized("NFC", entries[0].name)


def test_counts_with_and_without_header_and_crlf():
    with_header = parse_corpus(b"name\tcount\r\nMARIA\t10\r\nJOSE\t3\r\n")
    without = parse_corpus(b"MARIA\t10\nJOSE\t3\n")
    assert with_header == without == [Entry("MARIA", 10), Entry("JOSE", 3)]


def test_title_case_merges_counts_of_the_same_name():
    entries = parse_corpus(b"MARIA\t10\nmaria\t5\nD'ARC\t2\nANA-LU\t1\n", title_case=True)
    assert entries == [Entry("Maria", 15), Entry("D'Arc", 2), Entry("Ana-Lu", 1)]


@pytest.mark.parametrize("payload, fragment", [
    (b"Ana\nBe\x07a\n", "corpus.txt:2: control character U+0007"),
    (b"Ana\nJo\xe3o\n", "corpus.txt:2: not valid UTF-8"),
    (b"Ana\t3\nBia\tmany\n", "corpus.txt:2: count must be a positive integer"),
    (b"Ana\t0\n", "corpus.txt:1: count must be a positive integer"),
    (b"Ana\t1\t2\n", "corpus.txt:1: expected 'name' or 'name<TAB>count'"),
    (b"\n  \n", "no names found"),
])
def test_bad_lines_name_file_and_line(tmp_path, payload, fragment):
    path = tmp_path / "corpus.txt"
    path.write_bytes(payload)
    with pytest.raises(CorpusError, match=re.escape(fragment)) as err:
        read_corpus(path)
    assert str(path) in str(err.value) or "no names" in fragment


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="cannot read corpus"):
        read_corpus(tmp_path / "nope.txt")


def test_write_then_read_round_trips(tmp_path):
    entries = [Entry("Maitê", 3), Entry("Cauã", 1)]
    write_corpus(tmp_path / "c.tsv", entries)
    assert read_corpus(tmp_path / "c.tsv") == entries


def test_split_is_deterministic_and_stable_when_names_are_added():
    names = [Entry(f"Name{i}") for i in range(2000)]
    train, val = split(names, 0.1)
    assert 120 < len(val) < 280 and len(train) + len(val) == 2000
    more = names + [Entry(f"Extra{i}") for i in range(500)]
    _train2, val2 = split(more, 0.1)
    assert {e.name for e in val} == {e.name for e in val2 if e.name.startswith("Name")}
    assert split(list(reversed(names)), 0.1)[1] == list(reversed(val))


def test_the_commonest_names_of_a_counted_corpus_always_train():
    """A name carried by HEAD_FACTOR times the mean count or more trains whatever its hash says (the
    census's Antônio and Luiz hash into validation); the rest keep their hash's side; without counts
    (or with modest ones), only the hash."""
    names = [Entry(f"Name{i}", 1 + i % 7) for i in range(3000)]
    hashed_val = [e for e in names if is_validation(e.name, 0.1)]
    heavy = {hashed_val[0].name, hashed_val[1].name}
    counted = [Entry(e.name, 10**6) if e.name in heavy else e for e in names]
    train, val = split(counted, 0.1)
    assert heavy <= {e.name for e in train} and not heavy & {e.name for e in val}
    assert {e.name for e in val} == {e.name for e in hashed_val} - heavy
    uncounted = [Entry(e.name) for e in names]
    assert split(uncounted, 0.1)[1] == [Entry(e.name) for e in hashed_val]


def test_split_rejects_a_fraction_out_of_range():
    with pytest.raises(ValueError, match="val_fraction"):
        split([Entry("Ana")], 1.0)


def test_the_census_file_ships_in_the_repository_as_its_readme_describes_it():
    """data/census/ibge_names_train.tsv: the bytes data/census/README.md names, the figures it states."""
    readme = " ".join((CENSUS_DIR / "README.md").read_text(encoding="utf-8").split())
    digest = hashlib.sha256(CENSUS_NAMES.read_bytes()).hexdigest()
    assert f"SHA-256 of the file: `{digest}`" in readme, "the census file is not the one data/census/README.md describes"
    assert "ODC-PDDL-1.0" in readme and "opendatacommons.org/licenses/pddl/1-0" in readme
    entries = read_corpus(CENSUS_NAMES)
    assert f"{len(entries):,} names, {sum(e.count for e in entries):,} people" in readme
    assert CENSUS_NAMES.read_bytes().startswith(b"name\tcount\nMARIA\t")
    assert all(re.fullmatch("[A-Z]+", e.name) and e.count > 0 for e in entries)  # upper-case ASCII, as stated
    counts = [e.count for e in entries]
    assert counts == sorted(counts, reverse=True)  # most frequent first


def test_the_census_loads_by_path_with_title_case():
    entries = read_corpus(CENSUS_NAMES, title_case=True)
    assert len(entries) > 55_000
    assert entries[0] == Entry("Maria", entries[0].count) and entries[0].count > 10_000_000
    assert all(unicodedata.is_normalized("NFC", e.name) and e.count > 0 for e in entries)
