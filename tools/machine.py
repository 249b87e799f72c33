"""What a measurement ran on, for every report and result page (`make eval`, `make bench`,
`make soak`): the date, the CPU, the cores, the load and the library versions, read once here."""

from __future__ import annotations

import datetime as dt
import os
import platform


def machine_info() -> dict:
    """What the figures were measured on: cores, CPU model, load, library versions."""
    import torch

    ort, np = (_version(name) for name in ("onnxruntime", "numpy"))  # pinned here; a GPU machine may lack them
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
        "numpy": np,
    }


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def machine_line(m: dict) -> str:
    return (f"{m['date']}: {m['cores']} cores ({m['usable_cores']} usable), {m['cpu']}; Python {m['python']}, "
            f"torch {m['torch']} ({m['torch_threads']} threads by default), onnxruntime {m['onnxruntime']}, "
            f"numpy {m['numpy']}; load average {m['load_average_1_5_15min'][0]} (1 min) at the start")
