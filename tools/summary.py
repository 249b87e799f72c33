"""Repeated measurements as median, min and max, and their one written form, "median (min–max,
n=N)": every measuring command's (`make bench`, `make eval`'s comparison of an ensemble)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def summary(values: Sequence[float]) -> dict:
    """Median, min and max of repeated measurements (and the values themselves)."""
    if not values:
        raise ValueError("no measurements")
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": list(values)}


def fmt(s: dict, spec: str = ",.0f", unit: str = "") -> str:
    """'median (min–max, n=N)' of a summary."""
    return (f"{format(s['median'], spec)}{unit} ({format(s['min'], spec)}–{format(s['max'], spec)}, "
            f"n={s['n']})")
