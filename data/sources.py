"""The name data shipped in data/census/ (provenance, licence and limits: data/census/README.md):
one home for their paths."""

from __future__ import annotations

from pathlib import Path

CENSUS_DIR = Path(__file__).resolve().parent / "census"
# IBGE 2010 first names with counts, upper-case without accents: the source of the default corpus
CENSUS_NAMES = CENSUS_DIR / "ibge_names_train.tsv"
# the reviewed exceptions to the accent rule (data/accents.py)
ACCENT_OVERRIDES = CENSUS_DIR / "accent_overrides.tsv"
