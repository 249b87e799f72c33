"""`make bench-serving`'s measuring: the benchmark's TorchServe instance, the workloads, one
measured run (latency, throughput, CPU of the server's process tree, handler time from the
workers' PredictionTime metrics) and the aggregate of repeated runs; the main table's data
(`measure_main`). bench/serving.py describes the whole section."""

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

from bench import load
from bench.common import summary
from core import contract
from serve.procfs import Window, cpu_meter

if TYPE_CHECKING:
    from serve.instance import Instance

MODELS = {"greedy": contract.MODEL, "session": contract.SESSION_MODEL}
TARGET = {"clients": 8, "req_per_s": 1000.0, "p99_ms": 25.0}
SESSION_NAMES = ("Lucas", "Maria", "Ana", "Pedro", "Júlia", "Davi", "Helena", "Rafael")


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
def bench_server(store: Path, models: Sequence[str], *, quiet_logs: bool = False,
                 properties: dict | None = None, timeout: float = 240.0) -> Iterator[Instance]:
    """A TorchServe instance of this benchmark (serve.instance.running: the shipped
    config.properties, from a temporary directory on free loopback ports, always stopped), plus
    `properties` and, with `quiet_logs`, the quiet log4j2 file: bench-only."""
    from serve.instance import running

    with tempfile.TemporaryDirectory(prefix="charrnn-bench-log4j-") as tmp:
        extra = dict(properties or {})
        if quiet_logs:
            log4j = Path(tmp) / "log4j2.xml"
            log4j.write_text(QUIET_LOG4J2)
            extra["vmargs"] = f"-Dlog4j.configurationFile=file://{log4j}"
        with running(store, tuple(models), properties=extra, timeout=timeout, prefix="charrnn-bench-serving-") as server:
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


def workloads(server: Instance, vocab: Sequence[str]) -> dict:
    capitals = [s for s in vocab if len(s) == 1 and s.isupper()] or [s for s in vocab if len(s) == 1][:10]
    bodies = [json.dumps({"prefix": c}, ensure_ascii=False).encode() for c in capitals]
    chars = set(vocab)
    names = [n for n in SESSION_NAMES if set(n) <= chars] or capitals
    host, port = "127.0.0.1", server.ports.inference
    return {"greedy": load.one_shot(f"/predictions/{MODELS['greedy']}", host, port, server.key(), bodies),
            "session": load.sessions(f"/predictions/{MODELS['session']}", host, port, server.key(), names)}


def one_run(server: Instance, workload, endpoint: str, clients: int, requests: int, warmup: int,
            max_seconds: float) -> tuple[dict, Window]:
    groups = server.process_groups()  # the Java frontend, each model's workers
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


def warm_jvm(server: Instance, loads: dict, endpoints: Sequence[str], requests: int, max_seconds: float,
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
    with bench_server(store, [MODELS[e] for e in endpoints]) as server:
        log(f"TorchServe READY in {server.started_s:.1f} s (inference port {server.ports.inference}); "
            f"workers { {m: server.worker_pids(m) for m in server.models} }")
        loads = workloads(server, vocabulary(store / contract.archive(MODELS[endpoints[0]])))
        warmed = warm_jvm(server, loads, endpoints, jvm_warmup, jvm_warmup_seconds, log)
        for rep in range(repeats):
            for e in endpoints:
                for c in clients:
                    result, window = one_run(server, loads[e], e, c, requests, warmup, max_seconds)
                    runs[(e, c)].append((result, window))
                    log(f"  round {rep + 1}/{repeats} {e:7s} {c:3d} clients: {result['req_per_s']:7.0f} req/s  "
                        f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  errors {result['errors']}")
        lines = server.log_lines("model_metrics.log")  # before the instance's directory goes
    out: dict = {"start_seconds": server.started_s, "jvm_warmup": warmed}
    for (e, c), items in runs.items():
        batches = parse_prediction_lines(lines, MODELS[e])
        for result, window in items:
            result["handler"] = handler_stats(batches, window)
        out.setdefault(e, {})[str(c)] = aggregate([r for r, _ in items])
    return out
