"""Shared pieces of `make bench`: median/min/max summaries and the one-line training settings
(the machine stamp: tools/machine.py; tables: tools/tables.py)."""

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


def describe(config: dict) -> str:
    """A training configuration (TrainConfig as a dict) in one line, for report tables."""
    schedule = ("cosine" if config["lr_schedule"] == "cosine"
                else "constant" if config["lr_decay"] == 1.0 else f"×{config['lr_decay']}/epoch")
    layers = f"{config['num_layers']}×" if config["num_layers"] > 1 else ""
    threads = f", {config['threads']} thread(s)" if config.get("threads") else ""
    pools = f", length pools of {config['length_pool']}" if config.get("length_pool", 0) > 1 else ""
    return (f"{config['cell'].upper()} {layers}{config['hidden_size']}, batch {config['batch_size']}, "
            f"lr {config['lr']:g} {schedule}, counts {config['count_weighting']}{pools}{threads}")
