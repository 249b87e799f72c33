"""The one table writer of every report: Markdown for the pages and summaries (`make eval`,
`make bench`, `make soak`), aligned plain text for what a command only prints (`make gpu-check`)."""

from __future__ import annotations

from collections.abc import Sequence

ALIGN = {"l": "---", "r": "---:", "c": ":---:"}
PAD = {"l": str.ljust, "r": str.rjust, "c": str.center}


def table(header: Sequence[str], rows: Sequence[Sequence], align: str = "", *, plain: bool = False) -> str:
    """A Markdown table, or with `plain` an aligned plain-text one (columns padded to their widest
    cell, two spaces apart, indented by two; no rule under the header). Cells are str(value); in
    Markdown "|" is escaped (a cell never splits its row). `align` gives one letter per column,
    "l", "r" or "c" (columns past it are left-aligned)."""
    if any(a not in ALIGN for a in align) or len(align) > len(header):
        raise ValueError(f"align {align!r}: one of l, r, c per column (at most {len(header)})")
    aligns = [align[i] if i < len(align) else "l" for i in range(len(header))]
    if plain:
        cells = [[str(v) for v in row] for row in [header, *rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        return "\n".join("  " + "  ".join(PAD[a](c, w) for a, c, w in zip(aligns, row, widths)).rstrip()
                         for row in cells)

    def line(cells: Sequence) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in cells) + " |"

    return "\n".join([line(header), "|" + "|".join(ALIGN[a] for a in aligns) + "|", *(line(row) for row in rows)])
