"""Accent restoration (data/accents.py): the census's common names come out as Brazilians write
them, names with no known accented form are left alone, the choice between several accented forms
is the documented one, the reviewed overrides are well-formed and each one needed, and the rule
reads local data only."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from data.accents import (
    WORDFREQ_SHARE,
    AccentError,
    AccentRule,
    default_rule,
    faker_first_names,
    read_overrides,
    strip_accents,
)
from data.build_default import census_corpus, changes_table
from data.corpus import Entry, read_corpus
from data.sources import ACCENT_OVERRIDES, CENSUS_DIR, CENSUS_NAMES

# The usual Brazilian spelling, written here by hand, of every name among the census's 100
# commonest whose spelling has an accent; the other 96 are written without one.
ACCENTED_TOP_100 = {
    "JOSE": "José", "JOAO": "João", "ANTONIO": "Antônio", "LUIS": "Luís", "ANTONIA": "Antônia", "ANDRE": "André",
    "MARCIA": "Márcia", "FABIO": "Fábio", "MARCIO": "Márcio", "SEBASTIAO": "Sebastião", "JESSICA": "Jéssica",
    "JULIA": "Júlia", "SERGIO": "Sérgio", "CLAUDIA": "Cláudia", "SONIA": "Sônia", "CLAUDIO": "Cláudio",
    "JULIO": "Júlio", "NATALIA": "Natália", "DEBORA": "Débora", "VINICIUS": "Vinícius", "ROGERIO": "Rogério",
    "ANDREIA": "Andréia", "LUCIA": "Lúcia", "ANGELA": "Ângela", "MARIO": "Mário", "FLAVIO": "Flávio",
}


@pytest.fixture(scope="module")
def rule() -> AccentRule:
    return default_rule()


@pytest.fixture(scope="module")
def census() -> list[Entry]:
    return read_corpus(CENSUS_NAMES)


def test_the_census_commonest_names_come_out_accented_and_the_others_unchanged(rule, census):
    top = [e.name for e in census[:100]]
    with_accents = [n for n in top if n in ACCENTED_TOP_100]
    assert len(with_accents) == len(ACCENTED_TOP_100) >= 20  # the 20 commonest with an accented form, and more
    for name in top:
        assert rule.restore(name.title()) == ACCENTED_TOP_100.get(name, name.title()), name


def test_names_keep_their_case_pattern_and_the_text_between_words(rule):
    assert rule.restore("JOAO") == "JOÃO" and rule.restore("joao") == "joão" and rule.restore("Joao") == "João"
    assert rule.restore("Maria Joao") == "Maria João" and rule.restore("Ana-Lucia") == "Ana-Lúcia"
    assert rule.restore("José") == "José"  # already accented: kept


def test_a_name_with_no_known_accented_form_is_unchanged(rule):
    for name in ("Maria", "Luiz", "Vitor", "Kauany", "Zzyzx"):
        assert rule.restore(name) == name
        assert rule.choose(name.lower()).source == "unchanged"


def make_rule(frequencies, faker=(), overrides=None, share=WORDFREQ_SHARE) -> AccentRule:
    return AccentRule(faker, frequencies, overrides or {}, share)


def test_two_accented_forms_the_more_frequent_then_the_first_in_code_point_order():
    assert make_rule({"sonia": 1.0, "sônia": 0.6, "sónia": 0.3}).restore("Sonia") == "Sônia"
    assert make_rule({"sonia": 1.0, "sónia": 0.6, "sônia": 0.3}).restore("Sonia") == "Sónia"
    tie = {"damaris": 1.0, "dâmaris": 2.0, "damáris": 2.0}  # á (U+00E1) before â (U+00E2), in any order
    assert make_rule(tie).restore("Damaris") == "Damáris"
    assert make_rule(dict(reversed(tie.items()))).restore("Damaris") == "Damáris"


def test_faker_beats_wordfreq_and_the_overrides_beat_both():
    frequencies = {"julia": 1.0, "julía": 5.0, "júlia": 0.1}
    assert make_rule(frequencies).restore("Julia") == "Julía"
    assert make_rule(frequencies, faker=["Ana Júlia"]).restore("Julia") == "Júlia"
    assert make_rule(frequencies, faker=["Júlia"], overrides={"julia": "julia"}).restore("Julia") == "Julia"
    # two Faker spellings of one name: the more frequent in wordfreq, then code-point order
    assert make_rule({"tais": 1.0, "taís": 0.1, "tâis": 0.2}, faker=["Taís", "Tâis"]).restore("Tais") == "Tâis"
    assert make_rule({"tais": 1.0}, faker=["Taís", "Tâis"]).restore("Tais") == "Taís"


def test_wordfreq_needs_a_share_of_the_bare_forms_frequency_and_portuguese_marks():
    assert make_rule({"vitor": 1.0, "vítor": WORDFREQ_SHARE}).restore("Vitor") == "Vítor"
    assert make_rule({"vitor": 1.0, "vítor": WORDFREQ_SHARE * 0.99}).restore("Vitor") == "Vitor"
    assert make_rule({"raissa": 1.0, "raïssa": 5.0, "raíssa": 0.5}).restore("Raissa") == "Raíssa"
    assert make_rule({"raissa": 1.0, "raïssa": 5.0, "ráïssa": 5.0}).restore("Raissa") == "Raissa"
    assert make_rule({"kauã": 1e-8}).restore("Kaua") == "Kauã"  # the bare form unknown to wordfreq


def test_spellings_that_meet_are_merged_counts_added(tmp_path):
    census = tmp_path / "census.tsv"
    census.write_text("name\tcount\nJOSE\t10\nJOSÉ\t5\nMARIA\t7\nJOSE\t1\n", encoding="utf-8")
    rule = make_rule({}, faker=["José"])
    assert census_corpus(census, rule) == [Entry("José", 16), Entry("Maria", 7)]
    assert make_rule({}, faker=["José"]).restore_entries([Entry("JOSE", 2), Entry("JOSÉ", 3)]) == [Entry("JOSÉ", 5)]


def test_the_default_corpus_is_the_census_title_cased_with_accents(rule, census):
    entries = census_corpus(CENSUS_NAMES, rule)
    assert [e.name for e in entries[:4]] == ["Maria", "José", "João", "Antônio"]
    assert sum(e.count for e in entries) == sum(e.count for e in census)
    assert len({e.name for e in entries}) == len(entries)
    census_names = {c.name for c in census}
    assert all(strip_accents(e.name).upper() in census_names for e in entries)
    restored = sum(1 for e in entries if not e.name.isascii())
    readme = " ".join((CENSUS_DIR / "README.md").read_text(encoding="utf-8").split())
    assert f"{restored:,} of the {len(census):,} names take accents" in readme, "data/census/README.md's count"


def test_the_changes_table_lists_each_restored_spelling_with_its_source(rule, tmp_path):
    census = tmp_path / "census.tsv"
    census.write_text("name\tcount\nJOAO\t9\nMARIA\t8\nVERA\t3\nMARCIA\t2\n", encoding="utf-8")
    assert changes_table(census, rule).splitlines() == [
        "name\tspelling\tsource\tcount", "JOAO\tJoão\tfaker\t9", "MARCIA\tMárcia\twordfreq\t2"]


def test_every_shipped_override_is_needed(rule):
    """Each line of data/census/accent_overrides.tsv changes what the rule alone would give, and
    the file is sorted and gives a reason on every line."""
    overrides = read_overrides()
    assert overrides and overrides == rule.overrides
    alone = AccentRule(faker_first_names(), rule.frequencies, {}, rule.share)
    for word, spelling in overrides.items():
        assert alone.choose(word).spelling != spelling, f"{word}: the override gives what the rule gives"
    names = [line.split("\t")[0] for line in ACCENT_OVERRIDES.read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")]
    assert names == sorted(names)
    assert rule.restore("Vera") == "Vera" and rule.restore("Marco") == "Marco" and rule.restore("Nicolas") == "Nicolas"


@pytest.mark.parametrize("line, message", [
    ("VERA\tVera\n", r"expected NAME<TAB>Spelling<TAB>reason"),
    ("VERA\tVera\t \n", r"expected NAME<TAB>Spelling<TAB>reason"),
    ("VERA\tVerona\ta respelling\n", r"'Verona' is not 'VERA' with accents"),
    ("JOSÉ\tJosé\talready accented\n", r"'JOSÉ' is not one word without accents"),
    ("ANA MARIA\tAna Maria\ttwo words\n", r"'ANA MARIA' is not one word"),
    ("VERA\tVera\tverb\nVERA\tVerá\tagain\n", r"'VERA' is listed twice"),
])
def test_a_bad_overrides_file_names_the_line_and_the_fault(tmp_path, line, message):
    path = tmp_path / "overrides.tsv"
    path.write_text("# comment\n\n" + line, encoding="utf-8")
    with pytest.raises(AccentError, match=re.escape(str(path)) + r":\d: " + message):
        read_overrides(path)


def test_a_missing_overrides_file_is_a_clear_error(tmp_path):
    with pytest.raises(AccentError, match=re.escape(str(tmp_path / "missing.tsv")) + ": cannot read"):
        read_overrides(tmp_path / "missing.tsv")


def test_the_rule_reads_local_data_only(monkeypatch):
    """Faker's lists, wordfreq's data files and the overrides file: no network."""
    def refuse(*args, **kwargs):
        raise AssertionError("the accent rule tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    rule = default_rule()
    assert rule.restore("Joao") == "João"
    assert Path(ACCENT_OVERRIDES).parent == Path(CENSUS_NAMES).parent == CENSUS_DIR
