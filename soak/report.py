"""`make soak`'s summary: one row per figure, with its target and whether it was met (printed
as it is added, then written as Markdown by tools/tables.py and as JSON by soak/__main__.py)."""

from __future__ import annotations

import sys
import time

from tools.tables import table


def log(message: str, who: str = "soak") -> None:
    print(f"[{who} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Table:
    """The summary: one row per figure, with its target and whether it was met."""

    def __init__(self, who: str = "soak"):
        self.rows: list[dict] = []
        self.details: dict = {}
        self.who = who  # the command that prints the rows (the prefix of each log line)

    def add(self, section: str, figure: str, value, target: str = "", ok: bool | None = None) -> None:
        self.rows.append({"section": section, "figure": figure, "value": str(value), "target": target,
                          "ok": ok})
        mark = "" if ok is None else ("ok" if ok else "FAILED")
        log(f"{section}: {figure}: {value} {('(target ' + target + ')') if target else ''} {mark}", self.who)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["ok"] is False]

    def markdown(self) -> str:
        return table(["section", "figure", "value", "target", "met"],
                     [[r["section"], r["figure"], r["value"], r["target"],
                       "" if r["ok"] is None else ("yes" if r["ok"] else "**NO**")] for r in self.rows])
