"""Shared pieces of `make bench`: the machine description, median/min/max summaries (tables:
tools/tables.py)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
from collections.abc import Sequence


def machine_info() -> dict:
    """What the figures were measured on: cores, CPU model, load, library versions."""
    import numpy
    import torch

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:  # pragma: no cover - pinned in pyproject.toml
        ort = "not installed"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_1_5_15min": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort,
        "numpy": numpy.__version__,
    }


def machine_line(m: dict) -> str:
    return (f"{m['date']}: {m['cores']} cores ({m['usable_cores']} usable), {m['cpu']}; Python {m['python']}, "
            f"torch {m['torch']} ({m['torch_threads']} threads by default), onnxruntime {m['onnxruntime']}, "
            f"numpy {m['numpy']}; load average {m['load_average_1_5_15min'][0]} (1 min) at the start")


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
