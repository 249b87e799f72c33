"""`make bench-serving`'s measuring: the benchmark's TorchServe instance, the runs (closed loop
by wrk, open loop by bench/load.py) with the CPU of the server's process tree and the handlers'
PredictionTime, the aggregate of repeated runs, and the main measurement (`measure_main`): the
shipped charrnn.mar beside the do-nothing handler in one TorchServe. bench/serving.py describes
the whole section."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench import load, wrk
from bench.ceiling import CEILING, build_store
from bench.common import summary
from core import contract
from serve.procfs import Window, cpu_meter

if TYPE_CHECKING:
    from serve.instance import Instance

# the handlers measured side by side: label -> model name in the bench's TorchServe
HANDLERS = {"do-nothing": CEILING, "charrnn": contract.MODEL}
SHIPPED = "charrnn"
SHIPPED_MODEL = HANDLERS[SHIPPED]
# the sweep's rule (bench/serving_sweep.py): the point with the most req/s at these clients with p99 under this
TARGET = {"clients": 8, "p99_ms": 25.0}
# issue 23's targets, from one run: idle latency against the do-nothing handler's, and throughput
# under load against it, with a latency bound and no error
TARGETS = {"idle_clients": 1, "idle_p50_ratio": 1.5, "loaded_clients": (8, 32), "throughput_ratio": 0.8,
           "p99_ms": 25.0}


def vocabulary(mar: Path) -> list[str]:
    with zipfile.ZipFile(mar) as z:
        return list(json.loads(z.read(contract.VOCAB))["symbols"])


def greedy_bodies(vocab: Sequence[str]) -> list[bytes]:
    """One-shot greedy request bodies: {"prefix": <a capital letter>} for each capital letter of
    the vocabulary (a request's shape in issue 23's measurements)."""
    capitals = [s for s in vocab if len(s) == 1 and s.isupper()] or [s for s in vocab if len(s) == 1][:10]
    return [json.dumps({"prefix": c}, ensure_ascii=False).encode() for c in capitals]


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
def bench_server(store: Path, models: Sequence[str], *, quiet_logs: bool = False,
                 properties: dict | None = None, timeout: float = 240.0, check: bool = True) -> Iterator[Instance]:
    """A TorchServe instance of this benchmark (serve.instance.running: the shipped
    config.properties, from a temporary directory on free loopback ports, always stopped), plus
    `properties` and, with `quiet_logs`, the quiet log4j2 file: bench-only. `check`: start the
    charrnn handler on each archive first (False for a store holding the do-nothing archive,
    whose shipped archives were checked where they were built)."""
    from serve.instance import running

    with tempfile.TemporaryDirectory(prefix="charrnn-bench-log4j-") as tmp:
        extra = dict(properties or {})
        if quiet_logs:
            log4j = Path(tmp) / "log4j2.xml"
            log4j.write_text(QUIET_LOG4J2)
            extra["vmargs"] = f"-Dlog4j.configurationFile=file://{log4j}"
        with running(store, tuple(models), properties=extra, timeout=timeout, check=check,
                     prefix="charrnn-bench-serving-") as server:
            yield server


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


def _cpu(window: Window, groups: dict, requests: int, generator_seconds: float = 0.0) -> dict:
    """CPU ms per request of each process group, the load generator (this process, plus wrk's
    own CPU when it ran as a child: `generator_seconds`), everything else and the capacity; and
    what these cores would answer if nothing else ran on them (CPU-bound req/s)."""
    n = max(1, requests)
    cpu = dict(window.cpu)
    cpu["load generator"] = cpu.get("load generator", 0.0) + generator_seconds
    own = sum(v for k, v in cpu.items() if k in groups or k == "load generator")
    cpu["other processes"] = max(0.0, cpu["machine busy"] - own)  # busy counts wrk too
    return {"cpu_ms_per_request": {k: v / n * 1e3 for k, v in cpu.items()},
            "cpu_bound_req_per_s": (os.cpu_count() or 1) * n / own if own > 0 else float("nan")}


def closed_run(server: Instance, model: str, bodies: Sequence[bytes], clients: int, seconds: float,
               warmup_seconds: float) -> tuple[dict, Window]:
    """`clients` keep-alive wrk connections on `model` for `seconds`, after `warmup_seconds` of
    the same load (not recorded); latency, throughput and the CPU of the server's processes."""
    url = f"{server.inference}/predictions/{model}"
    if warmup_seconds > 0:
        wrk.run(url, bodies, server.key(), connections=clients, seconds=warmup_seconds)
    groups = server.process_groups()
    window = Window()
    with cpu_meter(groups, window, server.java_pid)():
        got = wrk.run(url, bodies, server.key(), connections=clients, seconds=seconds)
    result = got.summary()
    result.update(_cpu(window, groups, got.requests, got.cpu_seconds), model=model)
    return result, window


def open_run(server: Instance, model: str, bodies: Sequence[bytes], rate: float, seconds: float,
             warmup_seconds: float) -> tuple[dict, Window]:
    """Requests at `rate` per second on `model` for `seconds` (bench/load.py's open loop, after
    `warmup_seconds` at that rate), latency from each request's scheduled send time."""
    host, port = "127.0.0.1", server.ports.inference
    raws = [load.post(f"/predictions/{model}", host, port, server.key(), b) for b in bodies]
    groups = server.process_groups()
    window = Window()
    sample = load.open_loop(host, port, raws, rate=rate, seconds=seconds, warmup_seconds=warmup_seconds,
                            measured=cpu_meter(groups, window, server.java_pid))
    result = load.summarize_open(sample)
    result.update(_cpu(window, groups, len(sample.latencies)), model=model)
    return result, window


SUMMARIZED = ("req_per_s", "p50_ms", "p99_ms")
SUMMARIZED_OPEN = ("req_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "service_p99_ms", "lag_p50_ms", "lag_p99_ms")


def aggregate(runs: Sequence[dict], keys: Sequence[str] = SUMMARIZED) -> dict:
    """median/min/max of `keys` over repetitions; errors and statuses summed; CPU per request
    and handler figures as medians."""
    out = {k: summary([r[k] for r in runs]) for k in keys}
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


def warm_jvm(server: Instance, bodies: Sequence[bytes], models: Sequence[str], seconds: float,
             log: Callable[[str], None]) -> dict:
    """Unrecorded load at 8 clients on each model before any measurement. The JVM compiles the
    frontend's hot paths over its first several thousand requests; until then its JIT compiler
    threads take more CPU than the requests themselves, which would measure a server that has
    just started, not one that is running."""
    if seconds <= 0:
        return {}
    done = {}
    for m in models:
        got = wrk.run(f"{server.inference}/predictions/{m}", bodies, server.key(), connections=8,
                      seconds=max(1.0, seconds / len(models)))
        done[m] = {"requests": got.requests, "seconds": round(got.seconds, 1), "errors": got.errors}
    log(f"  JVM warm-up: {done}")
    return done


def served_settings(server: Instance, models: Sequence[str]) -> dict:
    """What TorchServe reports for each model: workers, batchSize, maxBatchDelay (the settings the
    archive's model-config.yaml asked for, as the frontend took them)."""
    out = {}
    for m in models:
        info = server.model_info(m)
        out[m] = {"minWorkers": info.get("minWorkers"), "maxWorkers": info.get("maxWorkers"),
                  "batchSize": info.get("batchSize"), "maxBatchDelay": info.get("maxBatchDelay"),
                  "ready_workers": sum(w.get("status") == "READY" for w in info.get("workers", []))}
    return out


def measure_main(store: Path, *, clients: Sequence[int], rates: Sequence[float], repeats: int, seconds: float,
                 warmup_seconds: float, jvm_warmup_seconds: float, log: Callable[[str], None] = print) -> dict:
    """The shipped charrnn.mar and the do-nothing handler (bench/ceiling.py) in one TorchServe:
    closed loop (wrk) at each of `clients`, then open loop at each of `rates` (percent of the
    shipped handler's capacity: its highest closed-loop median req/s of this run), both handlers
    at the same arrival rates. Rounds interleave the points, so a drift of the background load
    hits every point alike."""
    from serve.server import check_archives

    check_archives(store, (SHIPPED_MODEL,))  # the shipped archive starts its handler in-process
    vocab = vocabulary(store / contract.archive(SHIPPED_MODEL))
    bodies = greedy_bodies(vocab)
    models = list(HANDLERS.values())
    closed: dict[tuple[str, int], list[tuple[dict, Window]]] = {(h, c): [] for h in HANDLERS for c in clients}
    opened: dict[tuple[str, float], list[tuple[dict, Window]]] = {(h, r): [] for h in HANDLERS for r in rates}
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-store-") as tmp:
        ceiling_store = build_store(store, Path(tmp) / "store")
        with bench_server(ceiling_store, models, check=False) as server:
            settings = served_settings(server, models)
            log(f"TorchServe READY in {server.started_s:.1f} s (inference port {server.ports.inference}); "
                f"served {settings}")
            warmed = warm_jvm(server, bodies, models, jvm_warmup_seconds, log)
            for rep in range(repeats):
                for c in clients:
                    for label, model in HANDLERS.items():
                        result, window = closed_run(server, model, bodies, c, seconds, warmup_seconds)
                        closed[(label, c)].append((result, window))
                        log(f"  closed round {rep + 1}/{repeats} {label:10s} {c:3d} clients: "
                            f"{result['req_per_s']:7.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                            f"p99 {result['p99_ms']:6.2f} ms  errors {result['errors']}")
            capacity = max(summary([r["req_per_s"] for r, _ in closed[(SHIPPED, c)]])["median"] for c in clients)
            for rep in range(repeats):
                for pct in rates:
                    for label, model in HANDLERS.items():
                        result, window = open_run(server, model, bodies, capacity * pct / 100, seconds, warmup_seconds)
                        opened[(label, pct)].append((result, window))
                        log(f"  open round {rep + 1}/{repeats} {label:10s} {pct:3.0f} % ({capacity * pct / 100:6.0f} "
                            f"req/s): p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                            f"errors {result['errors']}  generator lag p99 {result['lag_p99_ms']:.2f} ms")
            lines = server.log_lines("model_metrics.log")  # before the instance's directory goes
            started = server.started_s
    batches = {label: parse_prediction_lines(lines, model) for label, model in HANDLERS.items()}
    out: dict = {"start_seconds": started, "jvm_warmup": warmed, "served": settings, "capacity_req_per_s": capacity,
                 "closed": {}, "open": {}}
    for (label, c), items in closed.items():
        for result, window in items:
            result["handler"] = handler_stats(batches[label], window)
        out["closed"].setdefault(label, {})[str(c)] = aggregate([r for r, _ in items])
    for (label, pct), items in opened.items():
        for result, window in items:
            result["handler"] = handler_stats(batches[label], window)
        agg = aggregate([r for r, _ in items], SUMMARIZED_OPEN)
        agg["offered_req_per_s"] = capacity * pct / 100
        out["open"].setdefault(label, {})[f"{pct:g}"] = agg
    return out

