"""Processes as /proc (Linux) shows them, the serving layer's one reader of it: whether a process
is alive (a zombie is not), and CPU and memory: what a TorchServe instance's process tree (the Java
frontend, its JIT compiler threads, the Python workers) and the machine spend.

`cpu_meter` measures a window: CPU seconds of named pid groups (serve.server.Instance.process_groups),
of this process, of the JVM's JIT threads and of the whole machine, beside the cores' capacity.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def is_alive(pid: int | None) -> bool:
    """Is process `pid` running (a zombie is not)?"""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own exited child) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def process_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return 0


def jit_ticks(pid: int) -> int:
    """utime + stime of a JVM's JIT compiler threads (C1/C2 CompilerThread), in clock ticks."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        if "CompilerThre" in name:
            total += int(rest[11]) + int(rest[12])
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot (/proc/stat; busy excludes idle and iowait)."""
    try:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - values[3] - values[4], total


@dataclass
class Window:
    """What one measured run used: wall-clock window (epoch s) and CPU seconds per component."""

    start: float = 0.0
    end: float = 0.0
    cpu: dict | None = None


def cpu_meter(groups: dict[str, list[int]], window: Window, jvm: int | None = None) -> Callable:
    """A context-manager factory for load.run(measured=...): fills `window` with the wall-clock
    window and CPU seconds of each pid group, this process (the load generator), the JIT
    compiler threads of the JVM `jvm`, the whole machine (busy), and the cores' capacity over
    the window."""

    @contextmanager
    def measured():
        jit = jit_ticks(jvm) if jvm else 0
        before = {g: sum(process_ticks(p) for p in pids) for g, pids in groups.items()}
        own, (busy, _) = process_ticks(os.getpid()), machine_ticks()
        window.start, t0 = time.time(), time.perf_counter()
        try:
            yield
        finally:
            wall = time.perf_counter() - t0
            window.end = time.time()
            busy_after, _ = machine_ticks()
            cpu = {g: (sum(process_ticks(p) for p in pids) - before[g]) / TICK for g, pids in groups.items()}
            cpu["load generator"] = (process_ticks(os.getpid()) - own) / TICK
            if jvm:
                cpu["of which JIT"] = (jit_ticks(jvm) - jit) / TICK
            cpu["machine busy"] = (busy_after - busy) / TICK
            cpu["capacity"] = wall * (os.cpu_count() or 1)
            window.cpu = cpu

    return measured


def rss_kib(pid: int) -> int:
    """Resident memory (VmRSS) of a process in KiB; 0 if /proc does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
