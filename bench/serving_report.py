"""`make bench-serving`'s Markdown: the main table, where the time goes, and the sweep with its
choice (bench/serving.py describes the whole section)."""

from __future__ import annotations

from pathlib import Path

from bench.common import fmt
from bench.serving_runs import TARGET
from bench.serving_sweep import choose_best
from tools.tables import table

ENDPOINT_LABELS = {"greedy": "one-shot greedy", "session": "session (type a name, then close)"}


def shipped_point(config: dict) -> str:
    return f"{config.get('minWorkers')}:{config.get('batchSize')}:{config.get('maxBatchDelay')}"


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
