"""`make bench-serving` (the Serving section of `make bench`): a real TorchServe under load.

The benchmark starts its own TorchServe (serve.instance.running: the shipped config.properties —
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

This module is the section (`measure`, `section`); its parts: bench/serving_runs.py (the
instance, workloads, one measured run, aggregates), bench/serving_sweep.py (the points, the
patched archives, the choice), bench/serving_report.py (the Markdown), serve/procfs.py (CPU
from /proc).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from bench.serving_report import markdown
from bench.serving_runs import MODELS, TARGET, measure_main
from bench.serving_sweep import (
    DEFAULT_SWEEP,
    Point,
    choose_best,
    measure_sweep,
    parse_points,
    read_model_config,
)
from core import contract

ENDPOINTS = ("greedy", "session")


class Unavailable(RuntimeError):
    """The section cannot run here (no Java 17, no archives): reported as skipped."""


def check_available(store: Path, endpoints: Sequence[str]) -> None:
    from serve.server import ServerError, check_java

    try:
        check_java()
    except ServerError as exc:
        raise Unavailable(str(exc)) from None
    missing = [contract.archive(MODELS[e]) for e in endpoints if not (store / contract.archive(MODELS[e])).is_file()]
    if missing:
        raise Unavailable(f"{store}: missing {', '.join(missing)} (run `make archive`)")


def measure(store: str | Path, *, clients: Sequence[int] = (1, 8, 32), endpoints: Sequence[str] = ENDPOINTS,
            repeats: int = 3, requests: int = 2000, warmup: int = 200, max_seconds: float = 8.0,
            jvm_warmup: int = 12000, jvm_warmup_seconds: float = 30.0, sweep: Sequence[Point] = (),
            sweep_clients: int = TARGET["clients"], log: Callable[[str], None] = print) -> dict:
    """The whole section's data (see the module docstring)."""
    from tools.machine import machine_info

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


def section(args) -> dict:
    """The harness's entry (`python -m bench --sections serving`): {"data", "markdown"}."""
    store = Path(args.serving_model_store or Path(args.art_dir) / contract.MODEL_STORE)
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
