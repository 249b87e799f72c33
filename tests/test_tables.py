"""The one Markdown table writer (tools/tables.py) and the reports that use it."""

from __future__ import annotations

import pytest

from soak.report import Table
from tools.tables import table


def test_a_table_escapes_pipes_and_aligns_columns():
    text = table(["name", "n", "share"], [["a|b", 3, "50%"], ["c", 10, "5%"]], "lrc")
    assert text.splitlines() == ["| name | n | share |", "|---|---:|:---:|",
                                 "| a\\|b | 3 | 50% |", "| c | 10 | 5% |"]
    assert table(["x", "y"], []) == "| x | y |\n|---|---|"  # columns past `align` are left-aligned
    for bad in ("x", "lrrr"):
        with pytest.raises(ValueError, match="align"):
            table(["a", "b", "c"], [], bad)


def test_the_soak_summary_is_written_by_the_one_table_writer():
    """A value holding "|" (an error message, a regular expression) stays in its cell."""
    t = Table()
    t.add("fuzz", "5xx responses", 0, "0", True)
    t.add("soak", "harness error", "ValueError: a|b", "none", False)
    t.add("server", "started", "in 3.0 s")
    assert t.markdown().splitlines() == [
        "| section | figure | value | target | met |", "|---|---|---|---|---|",
        "| fuzz | 5xx responses | 0 | 0 | yes |",
        "| soak | harness error | ValueError: a\\|b | none | **NO** |",
        "| server | started | in 3.0 s |  |  |"]
