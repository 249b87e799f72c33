"""`make soak`: reliability runs against a real TorchServe, bounded to a few minutes, ending in
one summary table (printed, and written to <out-dir>/summary.json and summary.md).

    python -m soak [--art-dir artifacts] [--out-dir artifacts/soak] [--requests 5000] [--threads 6]
                   [--sections corrupt,make,sessions,fuzz,kill,restart] [--seed 0]

Sections (README.md "Reliability"):
  corrupt   every artifact of --art-dir and its .mar truncated, bit-flipped, with a swapped
            vocabulary: each loader refuses with one message naming the file (or the file loads
            identical); TorchServe started on a bad .mar fails fast instead of hanging
  make      a real `make` into a temporary ART, then retrains interrupted (SIGINT during
            training, SIGTERM during export) at moments the harness observed
            (soak/interrupted_make.py): the previous artifacts stay valid, or the whole new set
            when the signal met the export's commit; an interruption that could not be
            exercised is reported as such; `make` then completes
  sessions  the open-session cap (a clean 429, never TorchServe's 503), then a churn of
            sessions with the session worker's resident memory measured
  fuzz      >= 5,000 seeded requests of every bad-input class and valid ones whose answers are
            known (loopback only, a few threads): responses by status, 5xx, worker restarts
  kill      a one-shot worker killed (SIGKILL) during a bounded load: failed requests, time
            until every request succeeds again, TorchServe's restart of the worker
  restart   the server stopped and started under an open session: a clear error while it is
            down, SessionLost afterwards, a new session works

The TorchServe instance runs from a temporary folder on free loopback ports, with the archives
of --art-dir/model_store (`make soak` builds them), and is always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests
import torch
import yaml

from bench.common import machine_info
from bench.result_page import command_line, write_result_page
from core import contract
from serve.client import Client, ClientError, SessionLost
from serve.engine import Engine, GenerateRequest
from serve.server import Ports, ServerError, free_port, read_keys, start, stop
from soak import corrupt
from soak.fuzz import Case, Generator
from soak.interrupted_make import section_make

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("corrupt", "make", "sessions", "fuzz", "kill", "restart")
SEQUENCE_ID = "ts_request_sequence_id"


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Table:
    """The summary: one row per figure, with its target and whether it was met."""

    def __init__(self):
        self.rows: list[dict] = []
        self.details: dict = {}

    def add(self, section: str, figure: str, value, target: str = "", ok: bool | None = None) -> None:
        self.rows.append({"section": section, "figure": figure, "value": str(value), "target": target,
                          "ok": ok})
        mark = "" if ok is None else ("ok" if ok else "FAILED")
        log(f"{section}: {figure}: {value} {('(target ' + target + ')') if target else ''} {mark}")

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["ok"] is False]

    def markdown(self) -> str:
        lines = ["| section | figure | value | target | met |", "|---|---|---|---|---|"]
        for r in self.rows:
            met = "" if r["ok"] is None else ("yes" if r["ok"] else "**NO**")
            lines.append(f"| {r['section']} | {r['figure']} | {r['value']} | {r['target']} | {met} |")
        return "\n".join(lines)


# ---------------------------------------------------------------- the TorchServe instance


class Instance:
    def __init__(self, root: Path, store: Path):
        self.run_dir, self.store = root / "run", store
        self.ports = Ports(*(free_port() for _ in range(3)))
        self.inference = f"http://127.0.0.1:{self.ports.inference}"
        self.management = f"http://127.0.0.1:{self.ports.management}"

    def start(self, check: bool = True) -> float:
        started = time.monotonic()
        start(self.run_dir, self.store, self.ports, timeout=240, check=check)
        self.keys = read_keys(self.run_dir)  # new keys at every start
        return time.monotonic() - started

    def stop(self) -> None:
        stop(self.run_dir)

    def key(self, kind: str = "inference") -> str:
        return self.keys[kind]

    def workers(self, model: str) -> list[dict]:
        r = requests.get(f"{self.management}/models/{model}", timeout=10,
                         headers={"Authorization": f"Bearer {self.key('management')}"})
        r.raise_for_status()
        return r.json()[0]["workers"]

    def pids(self, model: str) -> list[int]:
        return sorted(int(w["pid"]) for w in self.workers(model))

    def worker_deaths(self) -> int:
        """Worker deaths TorchServe logged ("Worker disconnected"; each line is written twice)."""
        path = self.run_dir / "logs" / "ts_log.log"
        if not path.is_file():
            return 0
        with open(path, errors="replace") as fh:
            return len({line for line in fh if "Worker disconnected" in line})

    def client(self) -> Client:
        return Client(self.inference, self.run_dir / "key_file.json", self.management, timeout=60)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- corrupt


def section_corrupt(table: Table, art_dir: Path, work: Path, flips: int, seed: int) -> None:
    mar = art_dir / contract.MODEL_STORE / contract.archive(contract.MODEL)
    rows = corrupt.matrix(art_dir, mar, flips=flips, seed=seed, work=work / "corrupt")
    table.details["corrupt"] = rows
    for name in corrupt.ARTIFACTS:
        outcomes = Counter(r["outcome"] for r in rows if r["artifact"] == name)
        if not outcomes:
            continue
        bad = outcomes["SILENT"] + outcomes["UNCLEAR"]
        table.add("corrupt", f"{name}: {sum(outcomes.values())} damaged files (truncated, {flips} bit "
                  f"flips, swapped vocabulary)", f"{outcomes['rejected']} rejected naming the file, "
                  f"{outcomes['harmless']} harmless flips (load identical), {bad} silent or unclear",
                  "0 silent or unclear", bad == 0)
    # TorchServe itself on a bad archive: it must fail fast with the reason, not hang
    cases = {"swapped vocabulary (checksums recomputed)": lambda dst: corrupt.vocab_swapped(
        mar, dst, fix_mar_checksums=True), "truncated": lambda dst: dst.write_bytes(corrupt.truncate(mar.read_bytes()))}
    for label, make_bad in cases.items():
        store = work / f"bad-store-{len(table.rows)}"
        store.mkdir(parents=True)
        make_bad(store / contract.archive(contract.MODEL))
        shutil.copy2(art_dir / contract.MODEL_STORE / contract.archive(contract.SESSION_MODEL), store)
        for check in (False, True):
            inst = Instance(work / f"bad-run-{len(table.rows)}", store)
            started = time.monotonic()
            try:
                inst.start(check=check)
                outcome, ok = "STARTED (served a bad archive)", False
            except ServerError as exc:
                first = str(exc).splitlines()[0]
                outcome = f"refused after {time.monotonic() - started:.1f} s: {first[:160]}"
                ok = time.monotonic() - started < 90
            finally:
                inst.stop()
            how = "make serve's check on" if check else "check off: TorchServe's own start"
            table.add("corrupt", f".mar {label}, {how}", outcome, "refused fast with the reason", ok)


# ---------------------------------------------------------------- sessions


def section_sessions(table: Table, inst: Instance, churn: int, threads: int) -> None:
    config = yaml.safe_load((ROOT / "serve" / "config" / "charrnn_session.yaml").read_text())
    cap, slots = config["handler"]["sessions"]["open_max"], config["maxNumSequence"]
    client = inst.client()
    opened, refusal = [], None
    for i in range(cap + 1):
        s = client.session()
        try:
            s.type("Ma")
            opened.append(s)
        except ClientError as exc:
            refusal = (i + 1, exc)
            break
    ok = refusal is not None and refusal[0] == cap + 1 and refusal[1].status == 429 and refusal[1].retry_after
    value = (f"session #{refusal[0]}: HTTP {refusal[1].status}, Retry-After {refusal[1].retry_after}, "
             f"\"{refusal[1].message[:90]}...\"" if refusal else "never refused")
    table.add("sessions", f"opening {cap + 1} sessions (handler cap {cap}, TorchServe's slots {slots})", value,
              f"#{cap + 1} refused with 429, not 503", bool(ok))
    opened[0].close()
    replacement = client.session()
    try:
        replacement.type("Lu")
        after_close = "a new session opens"
    except ClientError as exc:
        after_close = f"still refused: HTTP {exc.status}"
    table.add("sessions", "after closing one", after_close, "a new session opens", after_close == "a new session opens")
    for s in [*opened[1:], replacement]:
        s.close()

    # several requests in flight on ONE session id: a fast typist's pipelined appends (within
    # TorchServe's queue of maxSequenceJobQueueSize per session) are all answered; a flood on one
    # id meets TorchServe's own limits, before the handler
    queue = config["maxSequenceJobQueueSize"]
    s = client.session()
    s.type("M")
    pipelined = concurrent_on_one_id(inst, s.id, [{"append": "a"}] * (queue - 1), timeout=30)
    s.close()
    table.add("sessions", f"{queue - 1} appends in flight at once on one open session",
              ", ".join(f"{k}: {v}" for k, v in sorted(pipelined.items())), "all 200", set(pipelined) == {"200"})
    flood = concurrent_on_one_id(inst, "soak-one-made-up-id", [{"append": "a"}] * 12, timeout=10)
    table.add("sessions", "12 requests at once on ONE unknown session id (TorchServe 0.12's own limits)",
              ", ".join(f"{k}: {v}" for k, v in sorted(flood.items())),
              f"explained: TorchServe answers 503 itself beyond {queue} queued for one session, and never "
              "answers those queued behind the request whose answer ends the sequence (here the 404)")

    pid = inst.pids("charrnn_session")[0]
    failures: Counter = Counter()
    abandon_every = max(1, churn // 12)  # a dozen abandoned: they stay open (below the cap) until idle
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = inst.client()
        s = local.client.session()
        try:
            s.type("Ma"[: 1 + i % 2])
            s.append("r")
            s.append("i")
            if i % abandon_every:
                s.close()
        except ClientError as exc:
            failures[exc.status] += 1

    warm = min(100, churn // 4)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(warm)))
    rss_before = rss_kib(pid)
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(warm, churn)))
    seconds = time.monotonic() - started
    rss_after = rss_kib(pid)
    same_worker = inst.pids("charrnn_session") == [pid]
    table.add("sessions", f"churn: {churn} sessions (open, 2 appends, close; 1 in {abandon_every} abandoned), "
              f"{threads} threads", f"{churn * 4 - churn // abandon_every} requests in {seconds:.0f} s, "
              f"failed: {sum(failures.values())} {dict(failures) or ''}", "0 failed", not failures)
    growth = (rss_after - rss_before) / 1024
    table.add("sessions", "session worker resident memory (VmRSS) over the churn",
              f"{rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB ({growth:+.1f} MiB), same worker: {same_worker}",
              "flat (< +16 MiB)", growth < 16 and same_worker)


def concurrent_on_one_id(inst: Instance, sid: str, bodies: list[dict], timeout: float) -> Counter:
    """Send `bodies` at once with the same session id; statuses ("no answer" after `timeout`)."""
    def call(body: dict) -> str:
        try:
            r = requests.post(f"{inst.inference}/predictions/charrnn_session", data=json.dumps(body).encode(),
                              headers={"Authorization": f"Bearer {inst.key()}", "Content-Type": "application/json",
                                       SEQUENCE_ID: sid}, timeout=timeout)
            return str(r.status_code)
        except requests.Timeout:
            return f"no answer in {timeout:g} s"
        except requests.RequestException as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(len(bodies)) as pool:
        return Counter(pool.map(call, bodies))


# ---------------------------------------------------------------- fuzz


def send(inst: Instance, case: Case, http: requests.Session) -> dict:
    headers = dict(case.headers)
    if case.token in ("inference", "management"):
        headers["Authorization"] = f"Bearer {inst.key(case.token)}"
    elif case.token == "wrong":
        headers["Authorization"] = "Bearer 0123456789abcdef"
    elif case.token.startswith("raw:"):
        headers["Authorization"] = case.token[4:].format(key=inst.key())
    try:
        r = http.request(case.method, inst.inference + case.path, data=case.body, headers=headers, timeout=60,
                         stream=case.stream)
        body = r.content
    except requests.RequestException as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"[:200]}
    out = {"status": r.status_code}
    if case.names is not None and r.status_code == 200:
        try:
            if case.stream:
                lines = [json.loads(line) for line in body.decode().splitlines() if line]
                got = lines[-1]["names"]
                streamed = ["".join(x["char"] for x in lines[:-1] if x["index"] == i) for i in range(len(got))]
                out["correct"] = got == case.names and streamed == got
            else:
                out["correct"] = json.loads(body)["names"] == case.names
        except (ValueError, KeyError, IndexError):
            out["correct"] = False
    if r.status_code >= 500 or r.status_code not in case.expect:
        out["sample"] = body[:200].decode("utf-8", "replace")
    if case.session and r.status_code == 200 and r.headers.get(SEQUENCE_ID):
        follow = http.post(inst.inference + case.path, data=json.dumps(case.session).encode(), timeout=60,
                           headers={"Authorization": f"Bearer {inst.key()}", "Content-Type": "application/json",
                                    SEQUENCE_ID: r.headers[SEQUENCE_ID]})
        out["follow_up"] = follow.status_code
    return out


def section_fuzz(table: Table, inst: Instance, engine: Engine, n: int, threads: int, seed: int) -> None:
    log(f"fuzz: generating {n} requests (seed {seed}) and their expected answers")
    cases = Generator(engine, seed).cases(n)
    pids = {m: inst.pids(m) for m in ("charrnn", "charrnn_session")}
    deaths = inst.worker_deaths()
    local = threading.local()

    def one(case: Case) -> dict:
        if not hasattr(local, "http"):
            local.http = requests.Session()
        return send(inst, case, local.http)

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(one, cases))
    seconds = time.monotonic() - started
    statuses = Counter(r["status"] for r in results)
    follow_ups = Counter(r["follow_up"] for r in results if "follow_up" in r)
    server_errors = [(c.category, r) for c, r in zip(cases, results) if r["status"] and r["status"] >= 500]
    no_response = [(c.category, r["error"]) for c, r in zip(cases, results) if r["status"] is None]
    unexpected = [(c.category, r["status"], r.get("sample", "")) for c, r in zip(cases, results)
                  if r["status"] and r["status"] < 500 and r["status"] not in c.expect]
    valid = [(c, r) for c, r in zip(cases, results) if c.names is not None]
    correct = sum(1 for c, r in valid if r["status"] == 200 and r.get("correct"))
    lost = [(c.category, r["status"]) for c, r in valid
            if (r["status"] == 200 and not r.get("correct")) or (r["status"] != 200 and c.expect == {200})]
    by_category: dict = {}
    for c, r in zip(cases, results):
        by_category.setdefault(c.category, Counter())[str(r["status"])] += 1
    after_pids = {m: inst.pids(m) for m in pids}
    restarts = inst.worker_deaths() - deaths
    replaced = sum(len(set(pids[m]) - set(after_pids[m])) for m in pids)
    check = inst.client().generate("Ma", num=3)
    want = engine.generate([GenerateRequest(prefix="Ma", num=3)])[0]
    table.details["fuzz"] = {"by_category": {k: dict(v) for k, v in by_category.items()},
                             "server_errors": server_errors[:20], "no_response": no_response[:20],
                             "unexpected": unexpected[:20], "lost": lost[:20], "follow_ups": dict(follow_ups)}
    table.add("fuzz", "requests sent (seeded, loopback, every bad-input class + valid ones)",
              f"{len(cases)} in {seconds:.0f} s ({len(cases) / seconds:.0f}/s, {threads} threads), "
              f"{len({c.category for c in cases})} classes", ">= 5000", len(cases) >= 5000)
    table.add("fuzz", "responses by status", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str)))
    table.add("fuzz", "5xx responses", len(server_errors), "0", not server_errors)
    table.add("fuzz", "no response (connection reset or timeout)", len(no_response), "0", not no_response)
    table.add("fuzz", "4xx other than expected for the class", len(unexpected), "0", not unexpected)
    table.add("fuzz", "valid requests answered correctly (names equal in-process decoding)",
              f"{correct} of {len(valid)}; lost {len(lost)}", "all", not lost)
    table.add("fuzz", "worker restarts (logged deaths; pids replaced)", f"{restarts}; {replaced}", "0",
              restarts == 0 and replaced == 0)
    table.add("fuzz", "a valid request after the run", f"{check} ({'correct' if check == want else 'WRONG'})",
              "correct", check == want)


# ---------------------------------------------------------------- kill


def section_kill(table: Table, inst: Instance, engine: Engine, threads: int, seed: int,
                 kill_at: float = 5.0, after_ready: float = 8.0) -> None:
    rng = random.Random(seed)
    prefixes = ["", "A", "Ma", "Jo", "Lu", "Pe", "Ca", "Ra"]
    bodies = [{"prefix": p, "num": 1 + rng.randrange(3)} for p in prefixes]
    want = {json.dumps(b): engine.generate([GenerateRequest(**b)])[0] for b in bodies}
    results: list[tuple[float, float, bool, str]] = []
    lock = threading.Lock()
    done = threading.Event()
    t0 = time.monotonic()

    def load() -> None:
        http, i = requests.Session(), rng.randrange(len(bodies))
        while not done.is_set():
            body = json.dumps(bodies[i % len(bodies)])
            i += 1
            sent = time.monotonic() - t0
            try:
                r = http.post(f"{inst.inference}/predictions/charrnn", data=body.encode(), timeout=60,
                              headers={"Authorization": f"Bearer {inst.key()}", "Content-Type": "application/json"})
                ok = r.status_code == 200 and r.json().get("names") == want[body]
                what = str(r.status_code)
            except (requests.RequestException, ValueError) as exc:
                ok, what = False, type(exc).__name__
            with lock:
                results.append((sent, time.monotonic() - t0, ok, what))

    workers = [threading.Thread(target=load, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    time.sleep(kill_at)
    before = inst.pids("charrnn")
    victim = before[0]
    killed_at = time.monotonic() - t0
    os.kill(victim, signal.SIGKILL)
    ready_at = None
    while time.monotonic() - t0 < killed_at + 120:
        try:
            ws = inst.workers("charrnn")
            if len(ws) == len(before) and all(w["status"] == "READY" for w in ws) and victim not in \
                    [int(w["pid"]) for w in ws]:
                ready_at = time.monotonic() - t0
                break
        except (requests.RequestException, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.1)
    time.sleep(after_ready)
    done.set()
    for w in workers:
        w.join(timeout=70)
    failures = [r for r in results if not r[2]]
    before_kill = [r for r in failures if r[1] < killed_at]
    last_failure = max((r[1] for r in failures), default=killed_at)
    tail = [r for r in failures if ready_at is not None and r[0] > ready_at + 1.0]
    table.details["kill"] = {"failures": [{"sent": round(a, 3), "done": round(b, 3), "what": w}
                                          for a, b, _, w in failures[:50]],
                             "killed_at": killed_at, "ready_at": ready_at, "pids_before": before}
    table.add("kill", f"load: {threads} threads of valid requests for {results[-1][1] if results else 0:.0f} s; "
              f"SIGKILL to worker pid {victim} at {killed_at:.1f} s", f"{len(results)} requests",
              "", None)
    table.add("kill", "failed requests (the injected fault: TorchServe answers 507 for the batch the dead "
              "worker held)", f"{len(failures)} "
              f"({', '.join(f'{k}: {v}' for k, v in Counter(r[3] for r in failures).items()) or 'none'})",
              "only around the kill", not before_kill and not tail)
    table.add("kill", "TorchServe restarted the worker (new pid READY)",
              f"after {ready_at - killed_at:.1f} s" if ready_at else "NOT within 120 s", "yes", ready_at is not None)
    table.add("kill", "time from the kill until every request succeeds again",
              f"{max(0.0, last_failure - killed_at):.1f} s", "bounded", ready_at is not None and not tail)


# ---------------------------------------------------------------- restart


def section_restart(table: Table, inst: Instance, engine: Engine) -> None:
    client = inst.client()
    s = client.session()
    first = s.type("Ma")
    old_id = s.id
    inst.stop()
    try:
        s.append("r")
        down = "no error (?)"
        ok_down = False
    except ClientError as exc:
        down = f"ClientError status {exc.status}: \"{exc.message[:80]}\""
        ok_down = exc.status == 0 and "cannot reach" in exc.message
    table.add("restart", "a session request while the server is down", down, "a clear error", ok_down)
    restart = inst.start(check=False)
    try:
        s.append("r")
        lost, ok_lost = "no error: the old session answered (?)", False
    except SessionLost as exc:
        lost, ok_lost = f"SessionLost (HTTP {exc.status}): \"{exc.message[:90]}...\"", exc.status == 404
    except ClientError as exc:
        lost, ok_lost = f"ClientError {exc.status}: {exc.message[:80]}", False
    table.add("restart", f"the old session after the restart ({restart:.0f} s)", lost, "a clear error for the lost session",
              ok_lost)
    again = s.type("Ma")
    ok_new = s.id not in (None, old_id) and again["next"] == first["next"] and again["completion"] == first["completion"]
    names = client.generate("Ma")
    ok_new = ok_new and names == engine.generate([GenerateRequest(prefix="Ma")])[0]
    s.close()
    table.add("restart", "a new session and a one-shot request after the restart",
              f"new session {'answers as before' if ok_new else 'DIFFERS'}; generate('Ma') = {names}", "work", ok_new)


# ---------------------------------------------------------------- main


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores ({cpu}), load {load}, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.release()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--art-dir", default="artifacts", type=Path)
    p.add_argument("--out-dir", default=None, type=Path, help="default: <art-dir>/soak")
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--threads", type=int, default=6)
    p.add_argument("--flips", type=int, default=20, help="bit flips per artifact")
    p.add_argument("--churn", type=int, default=400, help="sessions in the churn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--page", default=None, help="also write the summary as this result page (docs/results/soak.md)")
    args = p.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    art = args.art_dir.resolve()
    out = (args.out_dir or art / "soak").resolve()
    store = art / "model_store"
    for needed in (art / contract.TORCHSCRIPT, art / contract.VOCAB, *(store / a for a in contract.ARCHIVES)):
        if not needed.is_file():
            raise SystemExit(f"error: {needed} not found: run `make soak` (it builds them)")
    measured_on = machine_info()  # the result page's stamp: date, load and torch's threads at the start
    torch.set_num_threads(1)  # as in the workers: the in-process reference answers match exactly
    engine = Engine.from_artifacts(art / contract.TORCHSCRIPT, art / contract.VOCAB)
    table = Table()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = f"{when}; {machine()}; model {engine.fingerprint} ({art})"
    log(header)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="charrnn-soak-"))
    inst = None
    try:
        if "corrupt" in sections:
            section_corrupt(table, art, work, args.flips, args.seed)
        if "make" in sections:
            section_make(table, work, args.seed)
        served = [s for s in ("sessions", "fuzz", "kill", "restart") if s in sections]
        if served:
            inst = Instance(work / "served", store)
            table.add("server", "TorchServe started (archives checked first)", f"in {inst.start():.1f} s")
            for name in served:
                section_started = time.monotonic()
                if name == "sessions":
                    section_sessions(table, inst, args.churn, min(args.threads, 4))
                elif name == "fuzz":
                    section_fuzz(table, inst, engine, args.requests, args.threads, args.seed)
                elif name == "kill":
                    section_kill(table, inst, engine, min(args.threads, 4), args.seed)
                elif name == "restart":
                    section_restart(table, inst, engine)
                log(f"{name}: {time.monotonic() - section_started:.0f} s")
    except Exception as exc:
        table.add("soak", "harness error", f"{type(exc).__name__}: {exc}"[:300], "none", False)
        raise
    finally:
        if inst is not None:
            inst.stop()
        total = time.monotonic() - started
        table.add("soak", "total time", f"{total / 60:.1f} min", "a few minutes")
        write_summary(table, out, header, sections, args)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n## make soak: {header}\n\n{table.markdown()}\n")
    if args.page:  # a run that got this far (a harness error did not) replaces the result page
        write_result_page(args.page, "Reliability: `make soak`", f"Model {engine.fingerprint}.\n\n{table.markdown()}",
                          machine=measured_on, command=command_line("soak", argv))
    if table.failed:
        print(f"FAILED: {len(table.failed)} figure(s) missed their target (details: {out}/summary.json)")
        return 1
    print(f"all figures met their targets (details: {out}/summary.json)")
    return 0


def write_summary(table: Table, out: Path, header: str, sections: list[str], args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m soak " + " ".join(a for a in sys.argv[1:]) if sys.argv[1:] else "python -m soak"
    (out / "summary.json").write_text(json.dumps({
        "run": header, "command": command, "sections": sections, "requests": args.requests,
        "threads": args.threads, "seed": args.seed, "rows": table.rows, "details": table.details,
    }, indent=1, ensure_ascii=False, default=str) + "\n")
    (out / "summary.md").write_text(f"# make soak\n\n{header}\n\n`{command}`\n\n{table.markdown()}\n")


if __name__ == "__main__":
    raise SystemExit(main())
