"""The name data shipped in data/census/ (provenance, licence and limits: data/census/README.md):
one home for their paths."""

from __future__ import annotations

from pathlib import Path

from core import contract
from core.atomic import write_text_atomic

DATA_DIR = Path(__file__).resolve().parent  # the project's corpora, each documented by a README.md beside it
PROVENANCE = "README.md"
CENSUS_DIR = Path(__file__).resolve().parent / "census"
# IBGE 2010 first names with counts, upper-case without accents: the source of the default corpus
CENSUS_NAMES = CENSUS_DIR / "ibge_names_train.tsv"
# the reviewed exceptions to the accent rule (data/accents.py)
ACCENT_OVERRIDES = CENSUS_DIR / "accent_overrides.tsv"


def source_note(corpus: str | Path) -> Path:
    """The note beside a built corpus naming the project file it was built from."""
    corpus = Path(corpus)
    return corpus.with_name(corpus.name + contract.CORPUS_SOURCE_SUFFIX)


def write_source_note(corpus: str | Path, source: str | Path) -> None:
    """Record that `corpus` was built from `source`, one of the project's corpora (under data/)."""
    source = Path(source).resolve()
    text = str(source.relative_to(DATA_DIR.parent)) if source.is_relative_to(DATA_DIR) else str(source)
    write_text_atomic(source_note(corpus), text + "\n")


def project_corpus(corpus: str | Path, data_dir: Path = DATA_DIR) -> Path | None:
    """The project corpus (under data/, with a README.md beside it) that `corpus` is, or was built
    from (its source note, see write_source_note); None for a user's own corpus."""
    path = Path(corpus).resolve()
    note = source_note(path)
    data_dir = Path(data_dir).resolve()
    if not path.is_relative_to(data_dir) and note.is_file():
        path = (data_dir.parent / note.read_text(encoding="utf-8").strip()).resolve()
    if path.is_relative_to(data_dir) and (path.parent / PROVENANCE).is_file():
        return path
    return None
