"""`make bench-serving`'s Markdown and targets: the closed- and open-loop tables (the shipped
handler beside the do-nothing one), issue 23's targets with met or missed, where the time goes,
the session benchmark's section and the sweep (bench/serving.py describes the whole section)."""

from __future__ import annotations

from pathlib import Path

from bench.common import fmt
from bench.serving_runs import HANDLERS, SHIPPED, TARGET, TARGETS
from bench.serving_sweep import choose_best
from tools.tables import table

CEILING_LABEL = next(label for label in HANDLERS if label != SHIPPED)


def shipped_point(config: dict) -> str:
    return f"{config.get('minWorkers')}:{config.get('batchSize')}:{config.get('maxBatchDelay')}"


def errors_cell(a: dict) -> str:
    bad = {k: v for k, v in a["statuses"].items() if k != "200" and v}
    text = f"{a['errors']} of {a['requests']:,}"
    return text + (" (" + ", ".join(f"{k}: {v}" for k, v in bad.items()) + ")" if bad and a["errors"] else "")


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def targets(result: dict) -> list[dict]:
    """Issue 23's targets, each {"target", "measured", "met"} from this run's medians (`met`
    None: measured elsewhere). The session benchmark adds its own (its data's "targets")."""
    closed = result["main"]["closed"]
    delay = result["archive"]["model_config"].get("maxBatchDelay")
    out = []
    c = str(TARGETS["idle_clients"])
    if c in closed.get(SHIPPED, {}):
        ratio = _ratio(closed[SHIPPED][c]["p50_ms"]["median"], closed[CEILING_LABEL][c]["p50_ms"]["median"])
        out.append({"target": f"one client, greedy one-shot: p50 ≤ {TARGETS['idle_p50_ratio']}× the do-nothing "
                              "handler's, with a 1 ms batch window",
                    "measured": f"{ratio:.2f}× ({closed[SHIPPED][c]['p50_ms']['median']:.2f} ms against "
                                f"{closed[CEILING_LABEL][c]['p50_ms']['median']:.2f} ms; maxBatchDelay {delay} ms)",
                    "met": ratio <= TARGETS["idle_p50_ratio"] and delay is not None and delay <= 1})
    for n in TARGETS["loaded_clients"]:
        c = str(n)
        if c not in closed.get(SHIPPED, {}):
            continue
        mine, ceiling = closed[SHIPPED][c], closed[CEILING_LABEL][c]
        ratio = _ratio(mine["req_per_s"]["median"], ceiling["req_per_s"]["median"])
        p99 = mine["p99_ms"]["median"]
        out.append({"target": f"{n} clients: ≥ {TARGETS['throughput_ratio']}× the do-nothing handler's req/s, "
                              f"p99 ≤ {TARGETS['p99_ms']:.0f} ms, zero errors",
                    "measured": f"{ratio:.2f}× ({mine['req_per_s']['median']:,.0f} against "
                                f"{ceiling['req_per_s']['median']:,.0f} req/s), p99 {p99:.1f} ms, {mine['errors']} errors",
                    "met": ratio >= TARGETS["throughput_ratio"] and p99 <= TARGETS["p99_ms"] and mine["errors"] == 0})
    shipped = result.get("shipped_config")
    if shipped is not None:
        out.append({"target": "the shipped config is the one measured (serve/config/charrnn.yaml = the archive's "
                              "model-config.yaml = what TorchServe serves, for both handlers)",
                    "measured": "the same" if shipped["same"] else "; ".join(shipped["differences"]),
                    "met": shipped["same"]})
    return out


def targets_markdown(items: list[dict]) -> list[str]:
    word = {True: "**met**", False: "**missed**", None: "not measured here"}
    return [f"- {t['target']}: {t['measured']} — {word[t['met']]}" for t in items]


def _closed_table(result: dict) -> str:
    closed = result["main"]["closed"]
    rows = []
    for c in result["settings"]["clients"]:
        for label in HANDLERS:
            a = closed[label][str(c)]
            versus = ""
            if label == SHIPPED:
                b = closed[CEILING_LABEL][str(c)]
                versus = (f"{_ratio(a['req_per_s']['median'], b['req_per_s']['median']):.2f}× req/s, "
                          f"{_ratio(a['p50_ms']['median'], b['p50_ms']['median']):.2f}× p50")
            rows.append([c, label, fmt(a["req_per_s"]), fmt(a["p50_ms"], ".2f"), fmt(a["p99_ms"], ".1f"),
                         errors_cell(a), versus])
    return table(["clients", "handler", "req/s", "p50 ms", "p99 ms", "errors", "charrnn ÷ do-nothing"], rows)


def _open_table(result: dict) -> str:
    opened = result["main"]["open"]
    rows = []
    for pct in result["settings"]["rates_percent"]:
        for label in HANDLERS:
            a = opened[label][f"{pct:g}"]
            rows.append([f"{pct:g} % ({a['offered_req_per_s']:,.0f})", label, fmt(a["req_per_s"]),
                         fmt(a["p50_ms"], ".2f"), fmt(a["p99_ms"], ".1f"), fmt(a["max_ms"], ".1f"), errors_cell(a),
                         f"{a['lag_p99_ms']['median']:.2f}"])
    return table(["arrival rate (req/s)", "handler", "answered req/s", "p50 ms", "p99 ms", "max ms", "errors",
                  "generator lag p99 ms"], rows)


def _cpu_table(result: dict) -> str:
    closed = result["main"]["closed"]
    head = ["handler", "clients", "req/s", "capacity", "machine busy", "frontend (Java)", "of which JIT", "workers",
            "load generator", "other processes", "CPU-bound req/s", "mean batch", "handler ms/batch",
            "handler ms/request"]
    rows = []
    for c in result["settings"]["clients"]:
        for label in HANDLERS:
            a = closed[label][str(c)]
            cpu = a["cpu_ms_per_request"]
            workers = cpu.get(f"workers {HANDLERS[label]}", float("nan"))
            h = a.get("handler", {})
            rows.append([label, c, f"{a['req_per_s']['median']:,.0f}", f"{cpu['capacity']:.3f}",
                         f"{cpu['machine busy']:.3f}", f"{cpu['frontend (Java)']:.3f}",
                         f"{cpu.get('of which JIT', float('nan')):.3f}", f"{workers:.3f}",
                         f"{cpu['load generator']:.3f}", f"{cpu['other processes']:.3f}",
                         f"{a['cpu_bound_req_per_s']['median']:,.0f}",
                         f"{h['mean_batch']:.1f}" if h else "–", f"{h['handler_ms_per_batch']:.3f}" if h else "–",
                         f"{h['handler_ms_per_request']:.3f}" if h else "–"])
    return table(head, rows)


def _sweep_lines(result: dict) -> list[str]:
    sweep = result.get("sweep")
    if not sweep:
        return []
    lines = ["", "### Batching sweep", "",
             (f"The shipped handler alone, {sweep['clients']} clients (closed loop), charrnn.mar's model-config.yaml "
              f"rewritten per point; rule: {sweep['rule']}; {sweep['seconds']:.0f} s."), ""]
    rows = []
    for i, r in enumerate(sweep["rows"]):
        p = r["point"]
        cpu = r["cpu_ms_per_request"]
        h = r.get("handler", {})
        note = "**best**" if i == sweep["best"] else ("bench-only quiet log4j2" if p["quiet_logs"] else "")
        rows.append([p["workers"], p["batch_size"], p["max_batch_delay_ms"], fmt(r["req_per_s"]),
                     fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".1f"), errors_cell(r),
                     f"{cpu['frontend (Java)']:.3f}", f"{sum(v for k, v in cpu.items() if k.startswith('workers ')):.3f}",
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
                      f"{p['max_batch_delay_ms']} ms (shipped: {shipped_point(result['archive']['model_config'])}).")]
    return lines


def markdown(result: dict) -> str:
    s = result["settings"]
    main = result["main"]
    config = result["archive"]["model_config"]
    lines = [
        (f"Server: {result['server']}, serving two models side by side: the shipped "
         f"`{Path(result['archive']['path']).name}` (built {result['archive']['built']}; workers:batchSize:"
         f"maxBatchDelay {shipped_point(config)}) and a do-nothing handler (bench/ceiling.py: it returns a fixed "
         "JSON answer) with the same settings: TorchServe's own ceiling on this machine. Request: "
         '`{"prefix": <a capital letter>}` (a greedy name). After the start, '
         f"{s['jvm_warmup_seconds']:.0f} s of unrecorded load let the JVM's JIT settle; each run is "
         f"{s['seconds_per_run']:.0f} s after {s['warmup_seconds_per_run']:.0f} s of the same load, and each figure "
         f"the median (min–max, n) of {s['repeats']} runs in interleaved rounds. req/s counts successful answers; "
         "errors are all other answers."),
        "",
        "### Closed loop",
        "",
        (f"Load: {result['load_generators']['closed']}: each client sends its next request when the last is "
         "answered. Latency from a request's write to its answer."),
        "",
        _closed_table(result),
        "",
        "### Open loop",
        "",
        (f"Load: {result['load_generators']['open']}. Requests arrive at a fixed rate, a share of the shipped "
         f"handler's capacity ({main['capacity_req_per_s']:,.0f} req/s: its best closed-loop median above), "
         "whether or not earlier ones were answered; both handlers get the same rates. Latency from each "
         "request's scheduled send time, so a stall is charged to every request behind it; the generator's own "
         "lateness (its p99 in the last column) is part of it."),
        "",
        _open_table(result),
        "",
        "### Targets",
        "",
        *targets_markdown(result.get("targets") or targets(result)),
        "",
        "### Where the time goes",
        "",
        ("CPU ms per request in the closed loop (/proc, median of the runs): the Java frontend (of which its JIT "
         "compiler threads), the handler's own Python workers, the load generator (wrk) and every other process; "
         "capacity = cores × wall time per request, so capacity − machine busy is idle CPU. CPU-bound req/s = "
         "cores ÷ (frontend + all workers + load generator CPU per request): what these cores would answer with no "
         "other process. Batches and handler time (wall clock) from the workers' PredictionTime metric."),
        "",
        _cpu_table(result),
        "",
        "### Sessions",
        "",
    ]
    lines.append("Typing sessions (thousands of simulated typists, open loop; ≥ 10,000 open sessions held) are "
                 "the bench's `sessions` section (bench/sessions.py), which `make bench-serving` runs after this "
                 "one: [bench-sessions.md](bench-sessions.md), with their targets.")
    lines += _sweep_lines(result)
    return "\n".join(lines)
