"""`make bench-serving` (the Serving section of `make bench`): a real TorchServe under load.

The benchmark starts its own TorchServe (serve.server.start: the shipped config.properties —
loopback only, token authorization on, model API off — from a temporary directory on free
loopback ports, TMPDIR per instance) with the archives built by `make archive`
(artifacts/model_store/*.mar, their own model-config.yaml), reads the inference token from the
instance's key file, and always stops it. The load generator is bench/load.py: keep-alive
HTTP/1.1 clients on raw asyncio sockets in this process, on the same cores as the server.

- Main table: 1, 8 and 32 concurrent clients on the one-shot greedy endpoint
  (POST /predictions/charrnn with {"prefix": <a capital letter>}, cycled over the vocabulary's
  capitals) and on the session endpoint (each client types names one character per request: an
  {"append"} that opens the session, one per further character, then {"close": true}). Each
  (endpoint, clients) point runs `repeats` times (rounds interleave the points, so background
  load hits all alike), each run a bounded number of requests after a short warm-up: req/s
  (successful answers per second), p50, p99 and errors, as median (min–max) of the runs.
- Where the time goes: CPU time of the Java frontend, of each model's workers (/proc), of the
  load generator and of every other process on the machine, per request, beside the wall-clock
  capacity of the cores; mean batch size and handler time from the workers' PredictionTime
  metrics (model_metrics.log).
- Sweep: the one-shot model at 8 clients under several (workers, batchSize, maxBatchDelay)
  points, each from a copy of charrnn.mar whose model-config.yaml carries that point (the
  server restarted per point, the model API still off). The best point by req/s with
  p99 <= 25 ms and zero errors is what serve/config/charrnn.yaml should ship. A point marked
  `quiet` also runs the frontend with a bench-only log4j2 configuration (TorchServe's default
  logs every request several times, at DEBUG, to files and stdout): that row measures what the
  logging costs; it is not the shipped server configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Self

from bench import load
from bench.common import fmt, summary, table
from core import contract

ENDPOINTS = ("greedy", "session")
ENDPOINT_LABELS = {"greedy": "one-shot greedy", "session": "session (type a name, then close)"}
MODELS = {"greedy": contract.MODEL, "session": contract.SESSION_MODEL}
TARGET = {"clients": 8, "req_per_s": 1000.0, "p99_ms": 25.0}
# workers:batchSize:maxBatchDelay(ms)[:quiet], and best:quiet (the best point so far, again with the
# quiet log4j2 file). At 8 clients at most 8 requests are in flight, so a batchSize over 8 acts as 8.
DEFAULT_SWEEP = "1:1:1,2:1:1,1:8:2,2:4:1,2:4:2,2:8:1,2:8:2,2:8:5,3:4:2,best:quiet"
SESSION_NAMES = ("Lucas", "Maria", "Ana", "Pedro", "Júlia", "Davi", "Helena", "Rafael")


class Unavailable(RuntimeError):
    """The section cannot run here (no Java 17, no archives): reported as skipped."""


# ---------------------------------------------------------------- sweep points and the choice


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


# ---------------------------------------------------------------- archives and the server


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


def vocabulary(mar: Path) -> list[str]:
    with zipfile.ZipFile(mar) as z:
        return list(json.loads(z.read(contract.VOCAB))["symbols"])


QUIET_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<!-- bench/serving.py, sweep points marked quiet only: warnings and errors to ts_log.log, the
     workers' PredictionTime lines to model_metrics.log; no per-request access, debug or metrics
     lines, nothing to stdout. -->
<Configuration>
  <Appenders>
    <RollingFile name="ts_log" fileName="${env:LOG_LOCATION:-logs}/ts_log.log"
                 filePattern="${env:LOG_LOCATION:-logs}/ts_log.%i.log">
      <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>
    </RollingFile>
    <RollingFile name="model_metrics" fileName="${env:METRICS_LOCATION:-logs}/model_metrics.log"
                 filePattern="${env:METRICS_LOCATION:-logs}/model_metrics.%i.log">
      <PatternLayout pattern="%d{ISO8601} - %m%n"/>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="MODEL_METRICS" level="all" additivity="false"><AppenderRef ref="model_metrics"/></Logger>
    <Logger name="ACCESS_LOG" level="off" additivity="false"/>
    <Logger name="TS_METRICS" level="off" additivity="false"/>
    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Root level="warn"><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


@contextmanager
def _config_with(extra: str):
    """serve.server.start writes config.properties from serve.server.render_config: append the
    bench-only lines `extra` to it for one start (restored afterwards)."""
    from serve import server

    original = server.render_config
    server.render_config = lambda model_store, ports: original(model_store, ports) + extra
    try:
        yield
    finally:
        server.render_config = original


class Server:
    """A TorchServe instance of this benchmark: started in a temporary directory with the shipped
    config.properties (plus `extra_properties` and, with `quiet_logs`, the quiet log4j2 file:
    bench-only), always stopped (use as a context manager)."""

    def __init__(self, store: Path, models: Sequence[str], *, quiet_logs: bool = False, extra_properties: str = "",
                 timeout: float = 240.0):
        self.store, self.models, self.timeout = Path(store), tuple(models), timeout
        self.quiet_logs, self.extra_properties = quiet_logs, extra_properties
        self.root = Path(tempfile.mkdtemp(prefix="charrnn-bench-serving-"))
        self.run_dir = self.root / "run"
        self.started_s = 0.0

    def __enter__(self) -> Self:
        from serve import server

        try:
            self.ports = server.Ports(*server.free_ports(3))  # serve.server picks free gRPC ports itself
            extra = "# bench/serving.py, bench-only:\n" + self.extra_properties if self.extra_properties else ""
            if self.quiet_logs:
                log4j = self.root / "log4j2.xml"
                log4j.write_text(QUIET_LOG4J2)
                extra += f"vmargs=-Dlog4j.configurationFile=file://{log4j}\n"
            started = time.perf_counter()
            with _config_with(extra):
                server.start(self.run_dir, self.store, self.ports, models=self.models, timeout=self.timeout)
            self.started_s = time.perf_counter() - started
            self.key = server.read_keys(self.run_dir)["inference"]
            self.java_pid = int((self.run_dir / "tmp" / ".model_server.pid").read_text().split()[0])
            self.refresh_workers()
        except BaseException:
            self.__exit__()
            raise
        return self

    def management(self, method: str, path: str, timeout: float = 120.0) -> tuple[int, object]:
        from serve import server

        req = urllib.request.Request(f"http://127.0.0.1:{self.ports.management}{path}", method=method,
                                     headers={"Authorization": f"Bearer {server.read_keys(self.run_dir)['management']}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def model_info(self, model: str) -> dict:
        status, info = self.management("GET", f"/models/{model}")
        if status != 200:
            raise RuntimeError(f"GET /models/{model}: HTTP {status} {info}")
        return info[0]

    def refresh_workers(self) -> None:
        self.worker_pids = {m: sorted(int(w["pid"]) for w in self.model_info(m)["workers"]) for m in self.models}

    def metrics_lines(self) -> list[str]:
        path = self.run_dir / "logs" / "model_metrics.log"
        return path.read_text(errors="replace").splitlines() if path.is_file() else []

    def __exit__(self, *exc) -> None:
        from serve import server

        try:
            server.stop(self.run_dir)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- CPU and handler accounting

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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


def parse_prediction_lines(lines: Sequence[str], model: str) -> list[tuple[float, int, float]]:
    """(epoch seconds, requests in the batch, PredictionTime ms) of each of `model`'s batches,
    from model_metrics.log lines such as
    '2026-11-27T03:05:53,910 - PredictionTime.ms:11.99|#ModelName:charrnn,Level:Model|#hostname:vm,requestID:a,b,timestamp:1'."""
    out = []
    tag = f"#ModelName:{model},"
    for line in lines:
        if " - PredictionTime.ms:" not in line or tag not in line:
            continue
        try:
            stamp, rest = line.split(" - PredictionTime.ms:", 1)
            when = datetime.strptime(stamp.strip(), "%Y-%m-%dT%H:%M:%S,%f").timestamp()  # local time, as log4j
            ms = float(rest.split("|", 1)[0])
            ids = rest.split("requestID:", 1)[1].rsplit(",timestamp:", 1)[0]
        except (ValueError, IndexError):
            continue
        out.append((when, len(ids.split(",")), ms))
    return out


def handler_stats(batches: Sequence[tuple[float, int, float]], window: Window) -> dict:
    inside = [(n, ms) for when, n, ms in batches if window.start <= when <= window.end + 0.05]
    if not inside:
        return {"batches": 0}
    requests = sum(n for n, _ in inside)
    total_ms = sum(ms for _, ms in inside)
    return {"batches": len(inside), "mean_batch": requests / len(inside), "handler_ms_per_batch": total_ms / len(inside),
            "handler_ms_per_request": total_ms / requests}


# ---------------------------------------------------------------- measuring


def workloads(server: Server, vocab: Sequence[str]) -> dict:
    capitals = [s for s in vocab if len(s) == 1 and s.isupper()] or [s for s in vocab if len(s) == 1][:10]
    bodies = [json.dumps({"prefix": c}, ensure_ascii=False).encode() for c in capitals]
    chars = set(vocab)
    names = [n for n in SESSION_NAMES if set(n) <= chars] or capitals
    host, port = "127.0.0.1", server.ports.inference
    return {"greedy": load.one_shot(f"/predictions/{MODELS['greedy']}", host, port, server.key, bodies),
            "session": load.sessions(f"/predictions/{MODELS['session']}", host, port, server.key, names)}


def one_run(server: Server, workload, endpoint: str, clients: int, requests: int, warmup: int,
            max_seconds: float) -> tuple[dict, Window]:
    groups = {"frontend (Java)": [server.java_pid]}
    for m, pids in server.worker_pids.items():
        groups[f"workers {m}"] = pids
    window = Window()
    sample = load.run("127.0.0.1", server.ports.inference, workload, clients=clients, requests=requests,
                      warmup=max(warmup, 2 * clients), measured=cpu_meter(groups, window, server.java_pid),
                      max_seconds=max_seconds)
    result = load.summarize(sample)
    n = max(1, result["requests"])
    cpu = dict(window.cpu)
    own = sum(v for k, v in cpu.items() if k in groups or k == "load generator")
    cpu["other processes"] = max(0.0, cpu["machine busy"] - own)
    result["cpu_ms_per_request"] = {k: v / n * 1e3 for k, v in cpu.items()}
    # what these cores would answer if the server and the load generator had them to themselves
    # (CPU-bound: the same CPU per request, no other process)
    result["cpu_bound_req_per_s"] = (os.cpu_count() or 1) * n / own if own > 0 else float("nan")
    result["endpoint"] = endpoint
    return result, window


def aggregate(runs: Sequence[dict]) -> dict:
    """median/min/max of req/s, p50, p99 over repetitions; errors summed; CPU per request medians."""
    out = {k: summary([r[k] for r in runs]) for k in ("req_per_s", "p50_ms", "p99_ms")}
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    statuses: dict[str, int] = {}
    for r in runs:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    out["statuses"] = statuses
    bodies: dict[str, str] = {}
    for r in runs:
        for k, v in r.get("error_bodies", {}).items():
            bodies.setdefault(k, v)
    out["error_bodies"] = bodies
    cpu_keys = runs[0]["cpu_ms_per_request"].keys()
    out["cpu_ms_per_request"] = {k: summary([r["cpu_ms_per_request"][k] for r in runs])["median"] for k in cpu_keys}
    out["cpu_bound_req_per_s"] = summary([r["cpu_bound_req_per_s"] for r in runs])
    handler = [r["handler"] for r in runs if r.get("handler", {}).get("batches")]
    if handler:
        out["handler"] = {k: summary([h[k] for h in handler])["median"]
                          for k in ("mean_batch", "handler_ms_per_batch", "handler_ms_per_request")}
    out["runs"] = list(runs)
    return out


def warm_jvm(server: Server, loads: dict, endpoints: Sequence[str], requests: int, max_seconds: float,
             log: Callable[[str], None]) -> dict:
    """Unrecorded load at 8 clients before any measurement. The JVM compiles the frontend's hot
    paths over its first several thousand requests; until then its JIT compiler threads take more
    CPU than the requests themselves, which would measure a server that has just started, not one
    that is running."""
    if requests <= 0:
        return {}
    done = {}
    for e in endpoints:
        sample = load.run("127.0.0.1", server.ports.inference, loads[e], clients=8,
                          requests=max(1, requests // len(endpoints)), max_seconds=max_seconds / len(endpoints))
        done[e] = {"requests": len(sample.latencies), "seconds": round(sample.seconds, 1), "errors": sample.errors}
    log(f"  JVM warm-up: {done}")
    return done


def measure_main(store: Path, *, clients: Sequence[int], endpoints: Sequence[str], repeats: int, requests: int,
                 warmup: int, max_seconds: float, jvm_warmup: int, jvm_warmup_seconds: float,
                 log: Callable[[str], None] = print) -> dict:
    runs: dict[tuple[str, int], list[tuple[dict, Window]]] = {(e, c): [] for e in endpoints for c in clients}
    with Server(store, [MODELS[e] for e in endpoints]) as server:
        log(f"TorchServe READY in {server.started_s:.1f} s (inference port {server.ports.inference}); "
            f"workers {server.worker_pids}")
        loads = workloads(server, vocabulary(store / contract.archive(MODELS[endpoints[0]])))
        warmed = warm_jvm(server, loads, endpoints, jvm_warmup, jvm_warmup_seconds, log)
        for rep in range(repeats):
            for e in endpoints:
                for c in clients:
                    result, window = one_run(server, loads[e], e, c, requests, warmup, max_seconds)
                    runs[(e, c)].append((result, window))
                    log(f"  round {rep + 1}/{repeats} {e:7s} {c:3d} clients: {result['req_per_s']:7.0f} req/s  "
                        f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}")
        lines = server.metrics_lines()  # before the instance's directory goes
    out: dict = {"start_seconds": server.started_s, "jvm_warmup": warmed}
    for (e, c), items in runs.items():
        batches = parse_prediction_lines(lines, MODELS[e])
        for result, window in items:
            result["handler"] = handler_stats(batches, window)
        out.setdefault(e, {})[str(c)] = aggregate([r for r, _ in items])
    return out


def _wait_gone(pids: Sequence[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process_ticks(p) for p in pids):
        time.sleep(0.1)


def _serve_point(server: Server, archive: str, point: Point) -> None:
    """Replace the served charrnn by `archive` (bench-only: the model API is on in this
    instance) and check that TorchServe took the point's settings."""
    old = [p for pids in server.worker_pids.values() for p in pids]
    status, body = server.management("DELETE", f"/models/{MODELS['greedy']}")
    if status != 200:
        raise RuntimeError(f"unregistering {MODELS['greedy']}: HTTP {status} {body}")
    _wait_gone(old)
    status, body = server.management("POST", f"/models?url={archive}&model_name={MODELS['greedy']}"
                                     "&synchronous=true", timeout=server.timeout)
    if status != 200:
        raise RuntimeError(f"registering {archive}: HTTP {status} {body}")


def _check_point(server: Server, point: Point) -> None:
    info = server.model_info(MODELS["greedy"])
    got = (info.get("minWorkers"), info.get("batchSize"), info.get("maxBatchDelay"),
           sum(w.get("status") == "READY" for w in info.get("workers", [])))
    want = (point.workers, point.batch_size, point.max_batch_delay, point.workers)
    if got != want:
        raise RuntimeError(f"sweep point {point.label}: TorchServe reports (workers, batchSize, maxBatchDelay, "
                           f"READY) = {got}, expected {want}")
    server.refresh_workers()


def measure_sweep(store: Path, points: Sequence[Point], *, clients: int, repeats: int, requests: int, warmup: int,
                  max_seconds: float, jvm_warmup: int, jvm_warmup_seconds: float,
                  log: Callable[[str], None] = print) -> list[dict]:
    """One TorchServe per run of consecutive points with the same logging (bench-only config:
    the model API on so that each point is registered in a warm JVM, the quiet log4j2 file for
    quiet points), started with the archive as built and warmed with it (so that
    no point pays for the JIT); each point from a copy of charrnn.mar with its settings. The
    repetitions go in rounds over the points (each point registered anew per round), so a drift
    of the background load hits every point alike."""
    source = store / contract.archive(MODELS["greedy"])
    vocab = vocabulary(source)
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
            with Server(scratch, [MODELS["greedy"]], quiet_logs=group[0].quiet_logs,
                        extra_properties="enable_model_api=true\n") as server:
                log(f"TorchServe for the sweep READY in {server.started_s:.1f} s "
                    f"(model API on, {'quiet' if group[0].quiet_logs else 'shipped'} logging)")
                workload = workloads(server, vocab)["greedy"]
                warm_jvm(server, {"greedy": workload}, ["greedy"], jvm_warmup, jvm_warmup_seconds, log)
                serving_now = None
                for rep in range(repeats):
                    for i, (point, archive) in enumerate(zip(group, archives)):
                        if serving_now != archive:
                            _serve_point(server, archive, point)
                            serving_now = archive
                        _check_point(server, point)
                        result, window = one_run(server, workload, "greedy", clients, requests, warmup, max_seconds)
                        runs[i].append((result, window))
                        log(f"  sweep round {rep + 1}/{repeats} {point.label:12s}: {result['req_per_s']:7.0f} req/s  "
                            f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                            f"errors {result['errors']}")
                lines = server.metrics_lines()
            batches = parse_prediction_lines(lines, MODELS["greedy"])
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


# ---------------------------------------------------------------- the section


def check_available(store: Path, endpoints: Sequence[str]) -> None:
    from serve.server import ServerError, check_java

    try:
        check_java()
    except ServerError as exc:
        raise Unavailable(str(exc)) from None
    missing = [contract.archive(MODELS[e]) for e in endpoints if not (store / contract.archive(MODELS[e])).is_file()]
    if missing:
        raise Unavailable(f"{store}: missing {', '.join(missing)} (run `make archive`)")


def shipped_point(config: dict) -> str:
    return f"{config.get('minWorkers')}:{config.get('batchSize')}:{config.get('maxBatchDelay')}"


def measure(store: str | Path, *, clients: Sequence[int] = (1, 8, 32), endpoints: Sequence[str] = ENDPOINTS,
            repeats: int = 3, requests: int = 2000, warmup: int = 200, max_seconds: float = 8.0,
            jvm_warmup: int = 12000, jvm_warmup_seconds: float = 30.0, sweep: Sequence[Point] = (),
            sweep_clients: int = TARGET["clients"], log: Callable[[str], None] = print) -> dict:
    """The whole section's data (see the module docstring)."""
    from bench.common import machine_info

    store = Path(store)
    check_available(store, endpoints)
    started = time.perf_counter()
    archives = {e: {"path": str(store / contract.archive(MODELS[e])),
                    "built": datetime.fromtimestamp((store / contract.archive(MODELS[e])).stat().st_mtime).strftime("%Y-%m-%d %H:%M"),
                    "model_config": {k: v for k, v in read_model_config(store / contract.archive(MODELS[e])).items()
                                     if k != "handler"}}
                for e in endpoints}
    result = {
        "machine": machine_info(),
        "server": "TorchServe 0.12.0, started by the benchmark with the shipped config.properties "
                  "(serve/server.py: loopback, token auth, model API off) from a temporary directory",
        "load_generator": "bench/load.py: keep-alive HTTP/1.1 on asyncio sockets, in the benchmark's "
                          "process, on the same cores as the server",
        "archives": archives,
        "settings": {"clients": list(clients), "endpoints": list(endpoints), "repeats": repeats,
                     "requests_per_run": requests, "warmup_per_run": warmup, "max_seconds_per_run": max_seconds,
                     "jvm_warmup_requests": jvm_warmup, "jvm_warmup_max_seconds": jvm_warmup_seconds},
        "main": measure_main(store, clients=clients, endpoints=endpoints, repeats=repeats, requests=requests,
                             warmup=warmup, max_seconds=max_seconds, jvm_warmup=jvm_warmup,
                             jvm_warmup_seconds=jvm_warmup_seconds, log=log),
    }
    result["main_seconds"] = time.perf_counter() - started
    if sweep:
        if "greedy" not in endpoints:
            raise ValueError("the sweep runs the one-shot greedy endpoint: keep it in the endpoints")
        started = time.perf_counter()
        rows = measure_sweep(store, sweep, clients=sweep_clients, repeats=repeats, requests=requests,
                             warmup=warmup, max_seconds=max_seconds, jvm_warmup=jvm_warmup,
                             jvm_warmup_seconds=jvm_warmup_seconds, log=log)
        best = choose_best(rows)
        result["sweep"] = {"clients": sweep_clients, "rows": rows, "best": best,
                           "rule": f"highest median req/s with median p99 <= {TARGET['p99_ms']:.0f} ms and no "
                                   "error in any repetition, among points with the shipped logging",
                           "seconds": time.perf_counter() - started}
    return result


def errors_cell(a: dict) -> str:
    bad = {k: v for k, v in a["statuses"].items() if k != "200"}
    text = f"{a['errors']} of {a['requests']:,}"
    return text + (" (" + ", ".join(f"{k}: {v}" for k, v in bad.items()) + ")" if bad else "")


def markdown(result: dict) -> str:
    s = result["settings"]
    main = result["main"]
    lines = [
        f"Server: {result['server']}; archives "
        + ", ".join(f"`{Path(a['path']).name}` (built {a['built']}, workers:batchSize:maxBatchDelay "
                    f"{shipped_point(a['model_config'])})" for a in result["archives"].values())
        + f". Load: {result['load_generator']}. After each start, {s['jvm_warmup_requests']:,} unrecorded "
          f"requests (at most {s['jvm_warmup_max_seconds']:.0f} s) let the JVM's JIT settle. Each figure: median "
          f"(min–max, n) of {s['repeats']} runs of {s['requests_per_run']:,} requests (at most "
          f"{s['max_seconds_per_run']:.0f} s) after {s['warmup_per_run']} warm-up requests; req/s counts "
          "successful answers; errors are all other answers (status: count).",
        "",
    ]
    rows = []
    for e in s["endpoints"]:
        for c in s["clients"]:
            a = main[e][str(c)]
            rows.append([ENDPOINT_LABELS[e], c, fmt(a["req_per_s"]), fmt(a["p50_ms"], ".1f"), fmt(a["p99_ms"], ".1f"),
                         errors_cell(a)])
    lines.append(table(["endpoint", "clients", "req/s", "p50 ms", "p99 ms", "errors"], rows))
    if any("429" in main[e][str(c)]["statuses"] for e in s["endpoints"] for c in s["clients"]):
        lines += ["", ("429: a session refused by the handler's admission limit (`sessions.open_max` in "
                       "serve/config/charrnn_session.yaml: more simultaneous sessions than it admits).")]
    t = main.get("greedy", {}).get(str(TARGET["clients"]))
    if t:
        met = (t["req_per_s"]["median"] >= TARGET["req_per_s"] and t["p99_ms"]["median"] <= TARGET["p99_ms"]
               and t["errors"] == 0)
        lines += ["", (f"Target (one-shot greedy, {TARGET['clients']} clients): ≥ {TARGET['req_per_s']:,.0f} req/s "
                       f"with p99 ≤ {TARGET['p99_ms']:.0f} ms and zero errors: {t['req_per_s']['median']:,.0f} req/s, "
                       f"p99 {t['p99_ms']['median']:.1f} ms, {t['errors']} errors — "
                       f"**{'met' if met else 'NOT met'}** in this run.")]
    lines += ["", ("Where the time goes: CPU ms per request (/proc, median of the runs) of the Java frontend (of "
                   "which its JIT compiler threads), the model's Python workers, the load generator and every other "
                   "process; capacity = cores × wall time per request, so capacity − machine busy is idle CPU. "
                   "CPU-bound req/s = cores ÷ (frontend + workers + load generator CPU per request): what these "
                   "cores would answer with no other process. Batches and handler time (wall clock) from the "
                   "workers' PredictionTime metric."), ""]
    head = ["endpoint", "clients", "req/s", "capacity", "machine busy", "frontend (Java)", "of which JIT", "workers",
            "load generator", "other processes", "CPU-bound req/s", "mean batch", "handler ms/batch",
            "handler ms/request"]
    rows = []
    for e in s["endpoints"]:
        for c in s["clients"]:
            a = main[e][str(c)]
            cpu = a["cpu_ms_per_request"]
            workers = sum(v for k, v in cpu.items() if k.startswith("workers "))
            h = a.get("handler", {})
            rows.append([ENDPOINT_LABELS[e].split(" (")[0], c, f"{a['req_per_s']['median']:,.0f}",
                         f"{cpu['capacity']:.2f}", f"{cpu['machine busy']:.2f}", f"{cpu['frontend (Java)']:.2f}",
                         f"{cpu.get('of which JIT', float('nan')):.2f}",
                         f"{workers:.2f}", f"{cpu['load generator']:.2f}", f"{cpu['other processes']:.2f}",
                         f"{a['cpu_bound_req_per_s']['median']:,.0f}",
                         f"{h['mean_batch']:.1f}" if h else "–", f"{h['handler_ms_per_batch']:.2f}" if h else "–",
                         f"{h['handler_ms_per_request']:.2f}" if h else "–"])
    lines.append(table(head, rows))
    sweep = result.get("sweep")
    if sweep:
        lines += ["", (f"Sweep (one-shot greedy, {sweep['clients']} clients, charrnn.mar's model-config.yaml "
                      f"rewritten per point; rule: {sweep['rule']}; {sweep['seconds']:.0f} s):"), ""]
        rows = []
        for i, r in enumerate(sweep["rows"]):
            p = r["point"]
            cpu = r["cpu_ms_per_request"]
            h = r.get("handler", {})
            note = "**best**" if i == sweep["best"] else ("bench-only quiet log4j2" if p["quiet_logs"] else "")
            rows.append([p["workers"], p["batch_size"], p["max_batch_delay_ms"], fmt(r["req_per_s"]),
                         fmt(r["p50_ms"], ".1f"), fmt(r["p99_ms"], ".1f"), errors_cell(r),
                         f"{cpu['frontend (Java)']:.2f}", f"{sum(v for k, v in cpu.items() if k.startswith('workers ')):.2f}",
                         f"{r['cpu_bound_req_per_s']['median']:,.0f}", f"{h['mean_batch']:.1f}" if h else "–", note])
        lines.append(table(["workers", "batchSize", "maxBatchDelay ms", "req/s", "p50 ms", "p99 ms", "errors",
                            "Java CPU ms/req", "workers CPU ms/req", "CPU-bound req/s", "mean batch", ""], rows))
        if sweep["best"] is None:
            fallback = choose_best(sweep["rows"], float("inf"))
            lines += ["", f"No point met p99 ≤ {TARGET['p99_ms']:.0f} ms with zero errors in this run."]
            if fallback is not None:
                p = sweep["rows"][fallback]["point"]
                lines[-1] += (f" Highest req/s without errors: {p['workers']} workers, batchSize {p['batch_size']}, "
                              f"maxBatchDelay {p['max_batch_delay_ms']} ms.")
        else:
            p = sweep["rows"][sweep["best"]]["point"]
            lines += ["", (f"Best: {p['workers']} workers, batchSize {p['batch_size']}, maxBatchDelay "
                          f"{p['max_batch_delay_ms']} ms (shipped in the measured archive: "
                          f"{shipped_point(result['archives']['greedy']['model_config'])}).")]
    return "\n".join(lines)


def section(args) -> dict:
    """The harness's entry (`python -m bench --sections serving`): {"data", "markdown"}."""
    store = Path(args.serving_model_store or Path(args.art_dir) / "model_store")
    clients = [int(c) for c in str(args.serving_clients).split(",") if c.strip()]
    endpoints = [e.strip() for e in str(args.serving_endpoints).split(",") if e.strip()]
    unknown = [e for e in endpoints if e not in ENDPOINTS]
    if unknown:
        raise ValueError(f"unknown serving endpoint(s) {unknown}; choose from {', '.join(ENDPOINTS)}")
    result = measure(store, clients=clients, endpoints=endpoints, repeats=args.serving_repeats,
                     requests=args.serving_requests, warmup=args.serving_warmup,
                     max_seconds=args.serving_max_seconds, jvm_warmup=args.serving_jvm_warmup,
                     jvm_warmup_seconds=args.serving_jvm_warmup_seconds,
                     sweep=parse_points(DEFAULT_SWEEP if args.serving_sweep is None else args.serving_sweep),
                     log=lambda s: print(s, flush=True))
    return {"data": result, "markdown": markdown(result)}
