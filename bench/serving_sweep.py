"""`make bench-serving`'s sweep: the one-shot model at 8 clients (closed loop, wrk) under several
(workers, batchSize, maxBatchDelay) points, each from a copy of charrnn.mar whose
model-config.yaml carries that point, and the rule that chooses the point
serve/config/charrnn.yaml should ship. bench/serving.py describes the whole section."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.serving_runs import (
    SHIPPED_MODEL,
    TARGET,
    aggregate,
    bench_server,
    closed_run,
    greedy_bodies,
    handler_stats,
    parse_prediction_lines,
    vocabulary,
    warm_jvm,
)
from core import contract
from serve.procfs import Window, process_ticks

if TYPE_CHECKING:
    from serve.instance import Instance

# workers:batchSize:maxBatchDelay(ms)[:quiet], and best:quiet (the best point so far, again with the
# quiet log4j2 file). At 8 clients at most 8 requests are in flight, so a batchSize over 8 acts as 8.
DEFAULT_SWEEP = "1:1:1,2:1:1,2:4:1,2:8:1,3:8:1,4:8:1,2:8:2,2:8:5,best:quiet"


@dataclass(frozen=True)
class Point:
    workers: int
    batch_size: int
    max_batch_delay: int  # ms; >= 1 (TorchServe turns 0 into 100 ms)
    quiet_logs: bool = False

    @property
    def label(self) -> str:
        if self.workers == 0:
            return "best:quiet"
        return f"{self.workers}:{self.batch_size}:{self.max_batch_delay}" + (":quiet" if self.quiet_logs else "")


BEST_QUIET = Point(0, 0, 0, True)  # resolved during the sweep to the best point so far


def parse_points(spec: str) -> list[Point]:
    """'w:b:d[:quiet],...' (and 'best:quiet') -> points; '' or 'none' -> no sweep."""
    if spec.strip().lower() in ("", "none", "off"):
        return []
    points = []
    for item in spec.split(","):
        if item.strip() == "best:quiet":
            points.append(BEST_QUIET)
            continue
        parts = item.strip().split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "quiet"):
            raise ValueError(f"sweep point {item!r}: expected workers:batchSize:maxBatchDelay[:quiet]")
        w, b, d = (int(x) for x in parts[:3])
        if w < 1 or b < 1 or d < 1:
            raise ValueError(f"sweep point {item!r}: workers, batchSize and maxBatchDelay must be >= 1")
        points.append(Point(w, b, d, len(parts) == 4))
    return points


def choose_best(rows: Sequence[dict], p99_limit_ms: float = TARGET["p99_ms"]) -> int | None:
    """Index of the best sweep row: the highest median req/s among rows with no error in any
    repetition and median p99 <= the limit (ties: lower p99); rows with quiet logging are not
    candidates (not the shipped server configuration). None if no row qualifies."""
    eligible = [i for i, r in enumerate(rows) if not r["point"]["quiet_logs"] and r["errors"] == 0
                and r["p99_ms"]["median"] <= p99_limit_ms]
    if not eligible:
        return None
    return max(eligible, key=lambda i: (rows[i]["req_per_s"]["median"], -rows[i]["p99_ms"]["median"]))


def read_model_config(mar: Path) -> dict:
    import yaml

    with zipfile.ZipFile(mar) as z:
        return yaml.safe_load(z.read("model-config.yaml")) or {}


def patch_archive(src: Path, dst: Path, point: Point) -> None:
    """Copy `src` to `dst` with model-config.yaml's workers/batchSize/maxBatchDelay set to `point`
    (and its SHA-256 in checksums.json, which the worker verifies, updated to match)."""
    import hashlib

    import yaml

    with zipfile.ZipFile(src) as zin:
        members = [(item, zin.read(item.filename)) for item in zin.infolist()]
    files = {item.filename: data for item, data in members}
    config = yaml.safe_load(files["model-config.yaml"]) or {}
    config.update(minWorkers=point.workers, maxWorkers=point.workers, batchSize=point.batch_size,
                  maxBatchDelay=point.max_batch_delay)
    files["model-config.yaml"] = ("# bench/serving.py sweep point " + point.label + "\n"
                                  + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)).encode()
    if "checksums.json" in files:
        sums = json.loads(files["checksums.json"])
        if "model-config.yaml" in sums.get("files", {}):
            sums["files"]["model-config.yaml"] = hashlib.sha256(files["model-config.yaml"]).hexdigest()
            files["checksums.json"] = (json.dumps(sums, indent=1, sort_keys=True) + "\n").encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item, _ in members:
            zout.writestr(item, files[item.filename])


def _wait_gone(pids: Sequence[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process_ticks(p) for p in pids):
        time.sleep(0.1)


def _serve_point(server: Instance, archive: str, point: Point) -> None:
    """Replace the served charrnn by `archive` (bench-only: the model API is on in this
    instance) and check that TorchServe took the point's settings."""
    old = [p for m in server.models for p in server.worker_pids(m)]
    status, body = server.manage("DELETE", f"/models/{SHIPPED_MODEL}")
    if status != 200:
        raise RuntimeError(f"unregistering {SHIPPED_MODEL}: HTTP {status} {body}")
    _wait_gone(old)
    status, body = server.manage("POST", f"/models?url={archive}&model_name={SHIPPED_MODEL}"
                                     "&synchronous=true", timeout=server.timeout)
    if status != 200:
        raise RuntimeError(f"registering {archive}: HTTP {status} {body}")


def _check_point(server: Instance, point: Point) -> None:
    info = server.model_info(SHIPPED_MODEL)
    got = (info.get("minWorkers"), info.get("batchSize"), info.get("maxBatchDelay"),
           sum(w.get("status") == "READY" for w in info.get("workers", [])))
    want = (point.workers, point.batch_size, point.max_batch_delay, point.workers)
    if got != want:
        raise RuntimeError(f"sweep point {point.label}: TorchServe reports (workers, batchSize, maxBatchDelay, "
                           f"READY) = {got}, expected {want}")


def measure_sweep(store: Path, points: Sequence[Point], *, clients: int, repeats: int, seconds: float,
                  warmup_seconds: float, jvm_warmup_seconds: float, log: Callable[[str], None] = print) -> list[dict]:
    """One TorchServe per run of consecutive points with the same logging (bench-only config:
    the model API on so that each point is registered in a warm JVM, the quiet log4j2 file for
    quiet points), started with the archive as built and warmed with it (so that
    no point pays for the JIT); each point from a copy of charrnn.mar with its settings. The
    repetitions go in rounds over the points (each point registered anew per round), so a drift
    of the background load hits every point alike."""
    source = store / contract.archive(SHIPPED_MODEL)
    bodies = greedy_bodies(vocabulary(source))
    groups: list[list[Point]] = []
    for point in points:
        if groups and groups[-1][0].quiet_logs == point.quiet_logs:
            groups[-1].append(point)
        else:
            groups.append([point])
    rows: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="charrnn-bench-sweep-"))
    try:
        shutil.copy2(source, scratch / source.name)  # what each sweep server starts (and warms up) with
        for group in groups:
            if BEST_QUIET in group:
                best = choose_best(rows)
                if best is None:
                    log("  sweep best:quiet skipped: no point met the rule")
                    group = [p for p in group if p != BEST_QUIET]
                    if not group:
                        continue
                else:
                    b = rows[best]["point"]
                    resolved = Point(b["workers"], b["batch_size"], b["max_batch_delay_ms"], True)
                    group = [resolved if p == BEST_QUIET else p for p in group]
            archives = []
            for point in group:
                name = contract.archive(f"{contract.MODEL}-{point.label.replace(':', '-')}")
                patch_archive(source, scratch / name, point)
                archives.append(name)
            runs: list[list[tuple[dict, Window]]] = [[] for _ in group]
            with bench_server(scratch, [SHIPPED_MODEL], quiet_logs=group[0].quiet_logs,
                              properties={"enable_model_api": "true"}) as server:
                log(f"TorchServe for the sweep READY in {server.started_s:.1f} s "
                    f"(model API on, {'quiet' if group[0].quiet_logs else 'shipped'} logging)")
                warm_jvm(server, bodies, [SHIPPED_MODEL], jvm_warmup_seconds, log)
                serving_now = None
                for rep in range(repeats):
                    for i, (point, archive) in enumerate(zip(group, archives)):
                        if serving_now != archive:
                            _serve_point(server, archive, point)
                            serving_now = archive
                        _check_point(server, point)
                        result, window = closed_run(server, SHIPPED_MODEL, bodies, clients, seconds, warmup_seconds)
                        runs[i].append((result, window))
                        log(f"  sweep round {rep + 1}/{repeats} {point.label:12s}: {result['req_per_s']:7.0f} req/s  "
                            f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                            f"errors {result['errors']}")
                lines = server.log_lines("model_metrics.log")
            batches = parse_prediction_lines(lines, SHIPPED_MODEL)
            for point, items in zip(group, runs):
                for result, window in items:
                    result["handler"] = handler_stats(batches, window)
                row = aggregate([r for r, _ in items])
                row["point"] = {"workers": point.workers, "batch_size": point.batch_size,
                                "max_batch_delay_ms": point.max_batch_delay, "quiet_logs": point.quiet_logs}
                rows.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows
