"""`make bench-serving` (the Serving section of `make bench`): a real TorchServe under load, the
shipped handler beside TorchServe's own ceiling.

The benchmark starts its own TorchServe (serve.instance.running: the shipped config.properties —
loopback only, token authorization on, model API off — from a temporary directory on free
loopback ports) with two models: the shipped `charrnn.mar` as `make archive` built it, and
`ceiling.mar`, a do-nothing handler that returns a fixed JSON answer (bench/ceiling.py) with the
same workers, batchSize and maxBatchDelay. Both run in the same server and the same run, so the
ratio of the two is what the handler itself costs.

- Closed loop (wrk, bench/wrk.py): 1, 8 and 32 keep-alive clients, each sending its next
  one-shot greedy request ({"prefix": <a capital letter>}) as soon as the last is answered:
  req/s (successful answers), p50, p99, errors; each point `repeats` times in interleaved rounds,
  as median (min–max, n).
- Open loop (bench/load.py): requests arriving at fixed rates, 25, 50 and 80 % of the shipped
  handler's capacity (its best closed-loop req/s of this run), whether or not earlier ones were
  answered; latency from each request's scheduled send time (no coordinated omission), both
  handlers at the same rates.
- Targets (issue 23): idle p50 and loaded req/s against the do-nothing handler's, p99 and
  errors under load, and that the measured archive carries serve/config/charrnn.yaml as TorchServe
  took it; each printed met or missed.
- Where the time goes: CPU per request of the Java frontend, each handler's workers, the load
  generator and every other process (/proc), and each handler's PredictionTime per batch.
- Sessions: measured by the bench's `sessions` section (bench/sessions.py, which `make
  bench-serving` runs after this one) on its own page, bench-sessions.md; this page points to it.
- Sweep: the one-shot model at 8 clients under several (workers, batchSize, maxBatchDelay)
  points (bench/serving_sweep.py), the best by req/s with p99 <= 25 ms and no error.

Parts: bench/serving_runs.py (the instance, the runs, aggregates), bench/ceiling.py (the
do-nothing archive), bench/serving_sweep.py, bench/serving_report.py (the Markdown and the
targets), serve/procfs.py (CPU from /proc).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from bench import wrk
from bench.serving_report import markdown, targets
from bench.serving_runs import SHIPPED_MODEL, TARGET, measure_main
from bench.serving_sweep import (
    DEFAULT_SWEEP,
    Point,
    choose_best,
    measure_sweep,
    parse_points,
    read_model_config,
)
from core import contract


class Unavailable(RuntimeError):
    """The section cannot run here (no Java 17, no wrk, no archives): reported as skipped."""


def check_available(store: Path) -> None:
    from serve.server import ServerError, check_java

    try:
        check_java()
        wrk.available()
    except (ServerError, wrk.WrkMissing) as exc:
        raise Unavailable(str(exc)) from None
    if not (store / contract.archive(SHIPPED_MODEL)).is_file():
        raise Unavailable(f"{store}: missing {contract.archive(SHIPPED_MODEL)} (run `make archive`)")


def shipped_config(store: Path, served: dict) -> dict:
    """Is the measured archive the shipped configuration? serve/config/charrnn.yaml against the
    archive's model-config.yaml (all of it, handler section included) and against what
    TorchServe reported for both handlers (workers, batchSize, maxBatchDelay)."""
    import yaml

    from serve.archive import CONFIG_DIR

    source = yaml.safe_load((CONFIG_DIR / f"{SHIPPED_MODEL}.yaml").read_text(encoding="utf-8")) or {}
    archived = read_model_config(store / contract.archive(SHIPPED_MODEL))
    differences = [f"{k}: serve/config {source.get(k)!r}, archive {archived.get(k)!r}"
                   for k in sorted(set(source) | set(archived), key=str) if source.get(k) != archived.get(k)]
    for model, got in served.items():
        for k in ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay"):
            if got.get(k) != source.get(k):
                differences.append(f"{k}: serve/config {source.get(k)!r}, TorchServe's {model} {got.get(k)!r}")
        if got.get("ready_workers") != source.get("minWorkers"):
            differences.append(f"{model}: {got.get('ready_workers')} READY workers, serve/config {source.get('minWorkers')}")
    settings = {k: source.get(k) for k in ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")}
    return {"settings": settings, "same": not differences, "differences": differences}


def measure(store: str | Path, *, clients: Sequence[int] = (1, 8, 32), rates: Sequence[float] = (25, 50, 80),
            repeats: int = 3, seconds: float = 8.0, warmup_seconds: float = 2.0, jvm_warmup_seconds: float = 30.0,
            sweep: Sequence[Point] = (), sweep_clients: int = TARGET["clients"],
            log: Callable[[str], None] = print) -> dict:
    """The whole section's data (see the module docstring)."""
    from tools.machine import machine_info

    store = Path(store)
    check_available(store)
    started = time.perf_counter()
    mar = store / contract.archive(SHIPPED_MODEL)
    result = {
        "machine": machine_info(),
        "server": "TorchServe 0.12.0, started by the benchmark with the shipped config.properties "
                  "(serve/server.py: loopback, token auth, model API off) from a temporary directory",
        "load_generators": {"closed": "wrk (one thread, keep-alive; bench/wrk.py)",
                            "open": "bench/load.py's open loop (asyncio, keep-alive connection pool), in the "
                                    "benchmark's process"},
        "archive": {"path": str(mar), "built": datetime.fromtimestamp(mar.stat().st_mtime).strftime("%Y-%m-%d %H:%M"),
                    "model_config": {k: v for k, v in read_model_config(mar).items() if k != "handler"}},
        "settings": {"clients": list(clients), "rates_percent": list(rates), "repeats": repeats,
                     "seconds_per_run": seconds, "warmup_seconds_per_run": warmup_seconds,
                     "jvm_warmup_seconds": jvm_warmup_seconds},
        "main": measure_main(store, clients=clients, rates=rates, repeats=repeats, seconds=seconds,
                             warmup_seconds=warmup_seconds, jvm_warmup_seconds=jvm_warmup_seconds, log=log),
    }
    result["shipped_config"] = shipped_config(store, result["main"]["served"])
    result["main_seconds"] = time.perf_counter() - started
    result["targets"] = targets(result)
    if sweep:
        started = time.perf_counter()
        rows = measure_sweep(store, sweep, clients=sweep_clients, repeats=repeats, seconds=seconds,
                             warmup_seconds=warmup_seconds, jvm_warmup_seconds=jvm_warmup_seconds, log=log)
        result["sweep"] = {"clients": sweep_clients, "rows": rows, "best": choose_best(rows),
                           "rule": f"highest median req/s with median p99 <= {TARGET['p99_ms']:.0f} ms and no "
                                   "error in any repetition, among points with the shipped logging",
                           "seconds": time.perf_counter() - started}
    return result


def add_arguments(group) -> None:
    """The section's command-line options (bench/__main__.py), the session benchmark's with them."""
    group.add_argument("--serving-model-store", default=None,
                       help=f"archives to serve (default: ART_DIR/{contract.MODEL_STORE})")
    group.add_argument("--serving-repeats", type=int, default=3, help="runs per point (figures: median, min, max)")
    group.add_argument("--serving-seconds", type=float, default=8.0, help="measured seconds per run")
    group.add_argument("--serving-warmup-seconds", type=float, default=2.0,
                       help="seconds of the same load, not recorded, before each run")
    group.add_argument("--serving-jvm-warmup-seconds", type=float, default=30.0,
                       help="unrecorded load after each TorchServe start (until the JVM's JIT settles)")
    group.add_argument("--serving-clients", default="1,8,32", help="concurrent clients of the closed loop")
    group.add_argument("--serving-rates", default="25,50,80",
                       help="open-loop arrival rates, percent of the shipped handler's closed-loop capacity")
    group.add_argument("--serving-sweep", default=None,
                       help="workers:batchSize:maxBatchDelay[:quiet],... at 8 clients ('none': no sweep; "
                            f"default: {DEFAULT_SWEEP})")


def section(args) -> dict:
    """The harness's entry (`python -m bench --sections serving`): {"data", "markdown"}."""
    store = Path(args.serving_model_store or Path(args.art_dir) / contract.MODEL_STORE)
    clients = [int(c) for c in str(args.serving_clients).split(",") if c.strip()]
    rates = [float(r) for r in str(args.serving_rates).split(",") if r.strip()]
    if any(not 0 < r < 100 for r in rates):
        raise ValueError(f"--serving-rates: percentages of capacity between 0 and 100, got {rates}")
    result = measure(store, clients=clients, rates=rates, repeats=args.serving_repeats, seconds=args.serving_seconds,
                     warmup_seconds=args.serving_warmup_seconds, jvm_warmup_seconds=args.serving_jvm_warmup_seconds,
                     sweep=parse_points(DEFAULT_SWEEP if args.serving_sweep is None else args.serving_sweep),
                     log=lambda s: print(s, flush=True))
    return {"data": result, "markdown": markdown(result)}
