"""The one Markdown table writer of every report (`make eval`, `make bench`, `make soak`)."""

from __future__ import annotations

from collections.abc import Sequence

ALIGN = {"l": "---", "r": "---:", "c": ":---:"}


def table(header: Sequence[str], rows: Sequence[Sequence], align: str = "") -> str:
    """A Markdown table. Cells are str(value) with "|" escaped (a cell never splits its row);
    `align` gives one letter per column, "l", "r" or "c" (columns past it are left-aligned)."""
    if any(a not in ALIGN for a in align) or len(align) > len(header):
        raise ValueError(f"align {align!r}: one of l, r, c per column (at most {len(header)})")
    marks = [ALIGN[align[i]] if i < len(align) else ALIGN["l"] for i in range(len(header))]

    def line(cells: Sequence) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |"

    return "\n".join([line(header), "|" + "|".join(marks) + "|", *(line(row) for row in rows)])
