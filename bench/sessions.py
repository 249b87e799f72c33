"""`make bench-serving`'s session part (`python -m bench --sections sessions`): thousands of
simulated typists on a real TorchServe's session model, open loop, and 10,000 open sessions
held in a stated memory bound.

The benchmark starts its own TorchServe with the session archive only (serve.instance.running:
the shipped config.properties and the archive's own model-config.yaml, on free loopback ports,
always stopped) and drives it from this process with keep-alive HTTP/1.1 connections on raw
asyncio sockets (bench.load.Connection: a thread pool of `requests` clients costs several
times the CPU per request, and no load tool from the registries both keeps per-session state
and measures latency from each request's scheduled time at this rate on two cores).

- Typists (`run_typists`): each of T typists types one character a second (open loop: every
  keystroke has its time in a fixed schedule, typists spread evenly over the second; latency is
  measured from the scheduled time, so a slow answer or a busy load generator shows up as
  latency instead of fewer requests). A keystroke sends what the Python client sends: the whole
  text typed so far (`{"text": ...}`) with the session's id once the first answer gave it.
  After a name's last character the typist closes the session or (every other name) abandons
  it, then starts a new session with the next name. Requests share a pool of connections (a
  gateway's pool); the time waiting for a free one counts as latency too.
- Names (per row): `corpus`, drawn from the served model's training corpus (by count when it
  has counts): real traffic repeats the names people have, and so the prefixes the answer cache
  holds; `model`, sampled from the served model at temperature 1 (fixed seed): many names it
  invented, the cache's hard case; or a corpus file. Each row reports its answer-cache hit rate
  (header X-CharRNN-Session-Cache).
- Open sessions (`hold_sessions`): N sessions opened (`{"text": two letters}`) and left open,
  the worker's resident memory (VmRSS, serve.procfs) before and after, then `append` on every
  one of them: each answered 200 only if the worker still holds its text.

Targets (issue 23): >= 1,000 typists with zero errors and p99 <= 50 ms; >= 10,000 open sessions
held within the stated bound (serve/config/charrnn_session.yaml: session texts, state cache,
answer cache).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import random
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.load import Connection, percentile, post
from core import contract
from serve.procfs import Window, cpu_meter, rss_kib
from tools.tables import table

TARGET = {"typists": 1000, "p99_ms": 50.0, "open_sessions": 10_000}
DEFAULT_ROWS = ((1000, "corpus"), (2000, "corpus"), (1000, "model"))
NAME_SOURCES = {"corpus": f"drawn from ART_DIR/{contract.CORPUS}, the served model's training corpus, by count "
                          "when it has counts", "model": "sampled from the served model at temperature 1"}
PATH = f"/predictions/{contract.SESSION_MODEL}"
HEADER = contract.SESSION_HEADER.encode()
CACHE_HEADER = b"x-charrnn-session-cache"


class Unavailable(RuntimeError):
    """The section cannot run here (no Java 17, no session archive): reported as skipped."""


# ---------------------------------------------------------------- names


def model_names(art_dir: str | Path, count: int, seed: int = 0) -> list[str]:
    """`count` names sampled from the model of `art_dir` at temperature 1 (in-process, seeded)."""
    import torch

    from serve.engine import Engine
    from serve.validation import GenerateRequest

    art = Path(art_dir)
    engine = Engine.from_artifacts(art / contract.TORCHSCRIPT, art / contract.VOCAB)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        names: list[str] = []
        for k in itertools.count():
            batch = [GenerateRequest(num=64, temperature=1.0, seed=seed * 1_000_003 + k * 64 + j, max_length=24)
                     for j in range(4)]
            names += [n for got in engine.generate(batch) for n in got if n]
            if len(names) >= count:
                return names[:count]
    finally:
        torch.set_num_threads(threads)
    raise AssertionError("unreachable")


def corpus_names(path: str | Path, count: int, seed: int = 0) -> list[str]:
    """`count` names drawn from a corpus file (data.corpus: one name per line, or name<TAB>count
    with a header), by count when it has counts."""
    from data.corpus import read_corpus

    entries = read_corpus(path)
    if not entries:
        raise ValueError(f"{path}: no names")
    cumulative = list(itertools.accumulate(e.count for e in entries))
    rng = random.Random(seed)
    return [entries[bisect.bisect(cumulative, rng.random() * cumulative[-1])].name for _ in range(count)]


def names_of(source: str, art_dir: str | Path, count: int) -> list[str]:
    """What typists type: 'corpus' (ART_DIR's training corpus, as real traffic repeats the names
    people have), 'model' (samples of the served model: many names it invented, the answer
    cache's hard case) or a corpus file."""
    if source == "model":
        return model_names(art_dir, count)
    return corpus_names(Path(art_dir) / contract.CORPUS if source == "corpus" else source, count)


def usable(names: Sequence[str], characters: set[str], max_prefix: int) -> list[str]:
    """The names a session can type: vocabulary characters only, at most `max_prefix` long."""
    return [n for n in names if n and set(n) <= characters and len(n) <= max_prefix]


# ---------------------------------------------------------------- the load


class Pool:
    """`size` keep-alive connections handed out one request at a time."""

    def __init__(self, host: str, port: int, size: int):
        self.conns = [Connection(host, port) for _ in range(size)]
        self.free: asyncio.Queue = asyncio.Queue()
        for c in self.conns:
            self.free.put_nowait(c)

    async def open(self) -> None:
        await asyncio.gather(*(c.open() for c in self.conns))

    async def request(self, raw: bytes) -> tuple[int | str, dict, bytes, float]:
        """(status or error name, headers, body, when the request was written: after the wait
        for a free connection)."""
        conn = await self.free.get()
        sent = time.perf_counter()
        try:
            return (*await conn.request(raw), sent)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            return type(exc).__name__, {}, b"", sent
        finally:
            self.free.put_nowait(conn)

    def close(self) -> None:
        for c in self.conns:
            c.close()


class Typists:
    """Keystroke records of one run: (scheduled, sent, done) perf_counter seconds, status, cache."""

    def __init__(self):
        self.records: list[tuple[float, float, float, int | str, bytes]] = []
        self.error_bodies: dict[str, str] = {}
        self.wrong = 0  # 200 answers whose text is not what was typed
        self.no_id = 0  # keystrokes sent before the session's first answer gave its id
        self.sessions = 0


async def typist(pool: Pool, host: str, port: int, token: str, names: Sequence[str], first: int, start: float,
                 end: float, offset: float, period: float, out: Typists | None, append: bool,
                 tasks: set) -> None:
    """One typist from `start + offset`: a keystroke every `period` seconds until `end`, each
    sent as its own task (open loop) at its scheduled time."""
    k = first
    when = start + offset
    state = {"sid": b""}
    while when < end:
        name = names[k % len(names)]
        k += 1
        state = {"sid": b""}  # a new session per name
        if out is not None:
            out.sessions += 1
        for j in range(1, len(name) + 2):
            if when >= end:
                return
            delay = when - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if j <= len(name):
                body = {"append": name[j - 1]} if append and j > 1 else {"text": name[:j]}
                expect = name[:j]
            elif k % 2:  # every other name closed, the others abandoned
                body, expect = {"close": True}, None
            else:
                when += period
                continue
            task = asyncio.create_task(keystroke(pool, host, port, token, body, expect, when, state, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            when += period


async def keystroke(pool: Pool, host: str, port: int, token: str, body: dict, expect: str | None, scheduled: float,
                    state: dict, out: Typists | None) -> None:
    sid = state["sid"]
    if not sid and "text" not in body:
        # the session's first answer has not come back yet: nothing to continue or close by id
        if out is not None:
            out.no_id += 1
            if "append" in body:  # a keystroke lost (append mode only): an error of this run
                out.records.append((scheduled, scheduled, time.perf_counter(), "sent before the first answer", b""))
        return
    if not sid and out is not None and expect is not None and len(expect) > 1:
        out.no_id += 1  # sent as a new session: its text still makes the answer right
    extra = HEADER + b": " + sid + b"\r\n" if sid else b""
    raw = post(PATH, host, port, token, json.dumps(body, ensure_ascii=False).encode(), extra)
    status, headers, answer, sent = await pool.request(raw)
    done = time.perf_counter()
    if status == 200 and not state["sid"]:
        state["sid"] = headers.get(HEADER.lower(), b"")
    if out is None:
        return
    if status == 200 and expect is not None and json.loads(answer).get("text") != expect:
        out.wrong += 1
    out.records.append((scheduled, sent, done, status, headers.get(CACHE_HEADER, b"")))
    if status != 200:
        out.error_bodies.setdefault(str(status), answer[:200].decode("utf-8", "replace"))


async def drive_typists(host: str, port: int, token: str, names: Sequence[str], typists: int, seconds: float,
                        warmup: float, period: float, connections: int, append: bool,
                        measured: Callable) -> tuple[Typists, float]:
    pool = Pool(host, port, connections)
    await pool.open()
    tasks: set = set()
    try:
        out = Typists()
        now = time.perf_counter()
        # the warm-up: the same typists, unrecorded (the run starts with sessions already typing)
        start = now + 0.05
        record_from = start + warmup
        rng = random.Random(typists)
        firsts = [rng.randrange(len(names)) for _ in range(typists)]
        offsets = [period * i / typists for i in range(typists)]
        warm = [asyncio.create_task(typist(pool, host, port, token, names, firsts[i], start, record_from,
                                           offsets[i], period, None, append, tasks)) for i in range(typists)]
        await asyncio.gather(*warm)
        with measured():
            t0 = time.perf_counter()
            runs = [asyncio.create_task(typist(pool, host, port, token, names, firsts[i] + 7919, record_from,
                                               record_from + seconds, offsets[i], period, out, append, tasks))
                    for i in range(typists)]
            await asyncio.gather(*runs)
            if tasks:
                await asyncio.wait(set(tasks), timeout=60)
            wall = time.perf_counter() - t0
        return out, wall
    finally:
        for t in list(tasks):
            t.cancel()
        pool.close()


def summarize(out: Typists, typists: int, seconds: float, wall: float) -> dict:
    latencies = [(done - scheduled) * 1e3 for scheduled, _, done, _, _ in out.records]
    lag = [(sent - scheduled) * 1e3 for scheduled, sent, _, _, _ in out.records]
    statuses = Counter(str(s) for *_, s, _ in out.records)
    cache = Counter(c.decode() for *_, c in out.records if c)
    n = len(latencies)
    return {
        "typists": typists, "seconds": seconds, "keystrokes": n, "per_s": n / seconds if seconds else 0.0,
        "sessions": out.sessions, "errors": n - statuses.get("200", 0) + out.wrong, "wrong_answers": out.wrong,
        "statuses": dict(sorted(statuses.items())), "error_bodies": out.error_bodies,
        "p50_ms": percentile(latencies, 50) if n else float("nan"),
        "p90_ms": percentile(latencies, 90) if n else float("nan"),
        "p99_ms": percentile(latencies, 99) if n else float("nan"),
        "max_ms": max(latencies) if n else float("nan"),
        "send_lag_p99_ms": percentile(lag, 99) if n else float("nan"),
        "cache_hits": cache.get("hit", 0), "cache_misses": cache.get("miss", 0),
        "hit_rate": cache.get("hit", 0) / max(1, cache.get("hit", 0) + cache.get("miss", 0)),
        "sent_before_id": out.no_id, "drain_seconds": max(0.0, wall - seconds),
    }


def run_typists(server, names: Sequence[str], typists: int, *, seconds: float, warmup: float,
                period: float = 1.0, connections: int = 64, append: bool = False) -> dict:
    groups = server.process_groups()
    window = Window()
    out, wall = asyncio.run(drive_typists("127.0.0.1", server.ports.inference, server.key(), names, typists,
                                          seconds, warmup, period, connections, append,
                                          cpu_meter(groups, window, server.java_pid)))
    result = summarize(out, typists, seconds, wall)
    n = max(1, result["keystrokes"])
    result["cpu_ms_per_keystroke"] = {k: v / n * 1e3 for k, v in (window.cpu or {}).items()}
    return result


# ---------------------------------------------------------------- open sessions


async def open_sessions(host: str, port: int, token: str, names: Sequence[str], count: int,
                        connections: int) -> dict:
    """`count` new sessions, each `{"text": the first two letters of a name}`: their ids."""
    pool = Pool(host, port, connections)
    await pool.open()

    async def one(i: int) -> tuple[int | str, bytes]:
        body = json.dumps({"text": names[i % len(names)][:2]}, ensure_ascii=False).encode()
        status, headers, _, _ = await pool.request(post(PATH, host, port, token, body))
        return status, headers.get(HEADER.lower(), b"")

    try:
        t0 = time.perf_counter()
        opened = await asyncio.gather(*(one(i) for i in range(count)))
        return {"opened": sum(1 for status, sid in opened if status == 200 and sid),
                "open_statuses": dict(Counter(str(s) for s, _ in opened)),
                "open_seconds": time.perf_counter() - t0,
                "sids": [sid for status, sid in opened if status == 200 and sid]}
    finally:
        pool.close()


async def append_all(host: str, port: int, token: str, sids: Sequence[bytes], connections: int) -> Counter:
    pool = Pool(host, port, connections)
    await pool.open()

    async def one(sid: bytes) -> str:
        status, _, _, _ = await pool.request(post(PATH, host, port, token, b'{"append": "a"}', HEADER + b": " + sid + b"\r\n"))
        return str(status)

    try:
        return Counter(await asyncio.gather(*(one(s) for s in sids)))
    finally:
        pool.close()


def hold_sessions(server, names: Sequence[str], count: int, connections: int = 32) -> dict:
    """`count` sessions opened and left open; the worker's VmRSS before and after; then one
    `append` on each (200 only if the worker still holds the session's text)."""
    pid = server.worker_pids(contract.SESSION_MODEL)[0]
    before = rss_kib(pid)
    host, port, token = "127.0.0.1", server.ports.inference, server.key()
    got = asyncio.run(open_sessions(host, port, token, names, count, connections))
    after = rss_kib(pid)
    appended = asyncio.run(append_all(host, port, token, got.pop("sids"), connections))
    return {**got, "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
            "rss_growth_mib": (after - before) / 1024, "held": appended.get("200", 0),
            "append_statuses": dict(appended), "worker_pid": pid}


# ---------------------------------------------------------------- the section


def check_available(store: Path) -> None:
    from serve.server import ServerError, check_java

    try:
        check_java()
    except ServerError as exc:
        raise Unavailable(str(exc)) from None
    if not (store / contract.archive(contract.SESSION_MODEL)).is_file():
        raise Unavailable(f"{store}: missing {contract.archive(contract.SESSION_MODEL)} (run `make archive`)")


def session_config(store: Path) -> dict:
    import yaml

    with zipfile.ZipFile(store / contract.archive(contract.SESSION_MODEL)) as z:
        config = next(n for n in z.namelist() if n.endswith(".yaml"))
        return yaml.safe_load(z.read(config))


def stated_bound_mib(sessions: dict, count: int) -> dict:
    """The worker's session memory bound for `count` remembered sessions (docs/serving.md): the
    accounted bytes of each session text (serve.sessions) plus the two caches."""
    from serve.sessions import ENTRY_OVERHEAD

    per_session = 2 * 80 + ENTRY_OVERHEAD  # a 40-character id and a short text as Python strings, the entry
    return {"per_session_bytes": per_session, "sessions_mib": per_session * count / 2**20,
            "caches_mib": float(sessions["state_cache_mib"]) + float(sessions["answer_cache_mib"]),
            "total_mib": per_session * count / 2**20 + float(sessions["state_cache_mib"])
            + float(sessions["answer_cache_mib"])}


def parse_rows(spec: str) -> list[tuple[int, str]]:
    """'1000:corpus,2000:corpus,1000:model' -> [(typists, names source), ...]."""
    rows = []
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        typists, _, source = item.partition(":")
        if not typists.isdigit() or int(typists) < 1:
            raise ValueError(f"sessions row {item!r}: TYPISTS[:corpus|model|FILE], e.g. 1000:corpus")
        rows.append((int(typists), source or "corpus"))
    if not rows:
        raise ValueError("no sessions rows")
    return rows


def measure(store: str | Path, art_dir: str | Path, *, rows: Sequence[tuple[int, str]] = DEFAULT_ROWS,
            seconds: float = 30.0, warmup: float = 5.0, jvm_warmup: float = 20.0, open_sessions: int = 10_000,
            connections: int = 64, append: bool = False, log: Callable[[str], None] = print) -> dict:
    from serve.instance import running
    from tools.machine import machine_info

    store = Path(store)
    check_available(store)
    config = session_config(store)
    with zipfile.ZipFile(store / contract.archive(contract.SESSION_MODEL)) as z:
        vocab = set(json.loads(z.read(contract.VOCAB))["symbols"])
    max_prefix = int((config.get("handler", {}).get("limits") or {}).get("max_prefix", 32))
    names = {}
    for source in dict.fromkeys(source for _, source in rows):
        names[source] = usable(names_of(source, art_dir, 20_000), vocab, max_prefix)
        if not names[source]:
            raise ValueError(f"sessions: no name from {source} can be typed (vocabulary, length)")
        log(f"sessions: names from {source}: {len(names[source]):,} ({len(set(names[source])):,} distinct, "
            f"mean length {sum(map(len, names[source])) / len(names[source]):.1f})")
    result = {"machine": machine_info(),
              "names": {src: {"count": len(n), "distinct": len(set(n)), "mean_length": sum(map(len, n)) / len(n)}
                        for src, n in names.items()},
              "model_config": {k: v for k, v in config.items() if k != "handler"},
              "sessions_config": config.get("handler", {}).get("sessions", {}),
              "settings": {"seconds": seconds, "warmup": warmup, "jvm_warmup": jvm_warmup, "connections": connections,
                           "append": append, "period_s": 1.0}, "rows": [], "target": TARGET}
    with running(store, (contract.SESSION_MODEL,), timeout=240, prefix="charrnn-bench-sessions-") as server:
        log(f"sessions: TorchServe READY in {server.started_s:.1f} s (inference port {server.ports.inference})")
        if jvm_warmup > 0:  # the JVM compiles the frontend's hot paths over its first thousands of requests
            first, source = rows[0]
            run_typists(server, names[source], first, seconds=jvm_warmup, warmup=0, connections=connections,
                        append=append)
        for typists, source in rows:
            row = run_typists(server, names[source], typists, seconds=seconds, warmup=warmup,
                              connections=connections, append=append)
            row["names"] = source
            result["rows"].append(row)
            log(f"  {typists:6d} typists ({source}): {row['keystrokes']} keystrokes ({row['per_s']:.0f}/s), "
                f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.0f} ms, errors "
                f"{row['errors']} {row['statuses']}, answer cache hits {row['hit_rate']:.0%}")
        if open_sessions:
            held = hold_sessions(server, names[rows[0][1]], open_sessions)
            held["bound"] = stated_bound_mib(result["sessions_config"], open_sessions)
            result["open"] = held
            log(f"  {open_sessions} open sessions: {held['held']} held; worker VmRSS {held['rss_before_mib']:.0f} -> "
                f"{held['rss_after_mib']:.0f} MiB ({held['rss_growth_mib']:+.1f}); stated bound "
                f"{held['bound']['total_mib']:.0f} MiB")
    return result


def markdown(result: dict) -> str:
    s, cfg, sessions = result["settings"], result["model_config"], result["sessions_config"]
    lines = [(f"A real TorchServe (the session archive alone, its shipped model-config.yaml: {cfg.get('maxWorkers')} "
              f"worker, batchSize {cfg.get('batchSize')}, maxBatchDelay {cfg.get('maxBatchDelay')} ms; "
              f"sessions: {sessions}) driven from the same machine by bench/sessions.py. Each typist types one "
              f"character a second (open loop: latency from each keystroke's scheduled time), sending "
              f"{'`append` after the first keystroke' if s['append'] else 'the whole text as the Python client does'}, "
              f"over a pool of {s['connections']} keep-alive connections; "
              f"{s['seconds']:.0f} s measured per row after a {s['warmup']:.0f} s warm-up (and {s['jvm_warmup']:.0f} s "
              "of typing after TorchServe's start, for the JVM). Every other finished name is closed, the others "
              "abandoned."), "",
             "Names typed: " + "; ".join(
                 f"{src} ({NAME_SOURCES.get(src, 'the file ' + src)}): {n['distinct']:,} distinct of {n['count']:,}, "
                 f"mean length {n['mean_length']:.1f}" for src, n in result["names"].items()) + ".", ""]
    rows = []
    for r in result["rows"]:
        met = r["errors"] == 0 and r["p99_ms"] <= TARGET["p99_ms"]
        rows.append([f"{r['typists']:,}", r["names"], f"{r['keystrokes']:,} ({r['per_s']:,.0f}/s)", f"{r['sessions']:,}",
                     f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.0f}",
                     f"{r['errors']}" + (f" {r['statuses']}" if r["errors"] else ""), f"{r['hit_rate']:.0%}",
                     f"{r['send_lag_p99_ms']:.1f}",
                     "yes" if met else ("no" if r["typists"] >= TARGET["typists"] else "")])
    lines.append(table(["typists", "names", "keystrokes", "sessions", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
                        "answer cache hits", "send lag p99 ms", (f"target (≥ {TARGET['typists']:,}: 0 errors, p99 ≤ "
                        f"{TARGET['p99_ms']:.0f} ms)")], rows, "rlrrrrrrrrrc"))
    lines += ["", ("Latency: from the keystroke's scheduled time to the answer's last byte. Send lag: from the "
                   "scheduled time to the request's write (the load generator's own delay and the wait for a free "
                   "connection, included in the latency). "
                   "Answer cache hits: answers served from the worker's answer cache (header X-CharRNN-Session-Cache); "
                   "a miss runs the model, the n-best completions most of all.")]
    cpu_rows = []
    for r in result["rows"]:
        c = r.get("cpu_ms_per_keystroke") or {}
        workers = sum(v for k, v in c.items() if k.startswith("workers"))
        cpu_rows.append([f"{r['typists']:,}", r["names"], f"{c.get('frontend (Java)', float('nan')):.2f}", f"{workers:.2f}",
                         f"{c.get('load generator', float('nan')):.2f}",
                         f"{c.get('machine busy', 0) / max(1e-9, c.get('capacity', 0)):.0%}" if c.get("capacity") else ""])
    if cpu_rows:
        lines += ["", "CPU per keystroke (ms, from /proc over the measured window):", "",
                  table(["typists", "names", "frontend (Java)", "session worker", "load generator", "machine busy"],
                        cpu_rows, "rlrrrr")]
    held = result.get("open")
    if held:
        b = held["bound"]
        ok = held["held"] >= TARGET["open_sessions"] and held["rss_growth_mib"] <= b["total_mib"]
        lines += ["", (f"Open sessions: {held['opened']:,} opened ({held['open_seconds']:.1f} s, statuses "
                      f"{held['open_statuses']}) and left open; then `append` on each: {held['held']:,} answered 200 "
                      f"(the worker still held their text; statuses {held['append_statuses']})."), "",
                  table(["open sessions held", "worker VmRSS before", "after", "growth", "stated bound",
                         f"target (≥ {TARGET['open_sessions']:,} held, growth within the bound)"],
                        [[f"{held['held']:,}", f"{held['rss_before_mib']:.0f} MiB", f"{held['rss_after_mib']:.0f} MiB",
                          f"{held['rss_growth_mib']:+.1f} MiB",
                          (f"{b['total_mib']:.0f} MiB ({b['per_session_bytes']} B × {held['opened']:,} sessions + "
                          f"{b['caches_mib']:.0f} MiB of caches)"), "yes" if ok else "no"]], "rrrrrc"),
                  "", ("The bound is what serve/sessions.py accounts (session texts: strings plus "
                       "ENTRY_OVERHEAD, checked against tracemalloc by tests/test_reliability_sessions.py; the "
                       "state cache preallocated at start-up, so already in the 'before' figure; the answer cache "
                       "by its bytes).")]
    return "\n".join(lines)


def section(args) -> dict:
    """The harness's entry (`python -m bench --sections sessions`): {"data", "markdown"}."""
    store = Path(args.serving_model_store or Path(args.art_dir) / contract.MODEL_STORE)
    result = measure(store, args.art_dir, rows=parse_rows(args.sessions_rows), seconds=args.sessions_seconds,
                     warmup=args.sessions_warmup, jvm_warmup=args.sessions_jvm_warmup, open_sessions=args.sessions_open,
                     connections=args.sessions_connections, append=args.sessions_append,
                     log=lambda line: print(line, flush=True))
    return {"data": result, "markdown": markdown(result)}
