"""`make soak`'s sections against a real TorchServe (soak/__main__.py describes each): corrupt
archives at start-up, many sessions at once and a churn of them, the fuzzer, a killed worker, a
restart under an open session. Each adds its figures to the summary (soak.report.Table)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

from core import contract
from serve.client import Client, ClientError, Session
from serve.engine import Engine
from serve.instance import Instance
from serve.procfs import rss_kib
from serve.server import ServerError
from serve.validation import GenerateRequest, SessionRequest
from soak import corrupt
from soak.fuzz import Case, Generator
from soak.report import Table, log

ROOT = Path(__file__).resolve().parent.parent
SEQUENCE_ID = contract.SESSION_HEADER


def new_client(inst: Instance) -> Client:
    return Client(inst.inference, inst.key_file, inst.management, timeout=60)


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
            inst = Instance(work / f"bad-run-{len(table.rows)}" / "run", store)
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


def section_sessions(table: Table, inst: Instance, engine: Engine, churn: int, threads: int,
                     at_once: int = 400) -> None:
    config = yaml.safe_load((ROOT / "serve" / "config" / "charrnn_session.yaml").read_text())
    bound = config["handler"]["sessions"]["max"]
    local = threading.local()

    def session_client() -> Client:
        if not hasattr(local, "client"):
            local.client = new_client(inst)
        return local.client

    # many sessions open at once (the old design refused the 25th with 429 and the 33rd with 503)
    def open_one(i: int) -> Session | ClientError:
        s = session_client().session()
        try:
            s.type("Ma"[: 1 + i % 2])
            return s
        except ClientError as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        opened = list(pool.map(open_one, range(at_once)))
    refused = Counter(x.status for x in opened if isinstance(x, ClientError))
    table.add("sessions", f"{at_once} sessions opened (16 threads) and kept open together",
              f"{at_once - sum(refused.values())} answered, refused: {dict(refused) or 0}",
              "all answered (no 429/503 from capacity)", not refused)
    live = [x for x in opened if not isinstance(x, ClientError)]

    # `append` alone: continues the text the worker holds; for an id it does not know, a 404
    # that says to send `text`; `text` works for any id
    def raw(sid: str, body: dict) -> requests.Response:
        return requests.post(f"{inst.inference}/predictions/charrnn_session", data=json.dumps(body).encode(),
                             headers={"Authorization": f"Bearer {inst.key()}", "Content-Type": "application/json",
                                      SEQUENCE_ID: sid}, timeout=30)

    continued = raw(live[0].id, {"append": "r"}) if live else None
    unknown = raw("soak-never-opened", {"append": "a"})
    rebuilt = raw("soak-never-opened", {"text": "Mar"})
    want = engine.session([(None, SessionRequest(text="Mar"))])[0]
    ok = (continued is not None and continued.status_code == 200 and continued.json()["text"] == live[0].text + "r"
          and unknown.status_code == 404 and "send the whole 'text'" in unknown.json().get("error", "")
          and rebuilt.status_code == 200 and rebuilt.json()["completion"] == want["completion"]
          and [c["char"] for c in rebuilt.json()["next"]] == [c["char"] for c in want["next"]])
    table.add("sessions", "`append` on an open session; `append` alone for an unknown id; then its `text`",
              f"{continued.status_code if continued is not None else '-'}; {unknown.status_code} "
              f"\"{unknown.json().get('error', '')[:70]}...\"; {rebuilt.status_code} "
              f"({'as in-process' if ok else 'DIFFERS'})", "200; 404 saying to send text; 200, correct", ok)

    # several requests in flight on ONE session id (a fast typist's pipelined keystrokes): all
    # answered, with no TorchServe queue per session any more
    burst = concurrent_on_one_id(inst, live[0].id if live else "soak-burst",
                                 [{"text": "Mar"[: 1 + k % 3]} for k in range(12)], timeout=30)
    table.add("sessions", "12 requests at once on ONE session id", ", ".join(f"{k}: {v}" for k, v in sorted(burst.items())),
              "all 200", set(burst) == {"200"})
    for s in live:
        try:
            s.close()
        except ClientError:
            pass

    pid = inst.worker_pids("charrnn_session")[0]
    failures: Counter = Counter()
    abandon_every = max(1, churn // 12)  # a dozen abandoned: they stay in the worker's bounded memory

    def one(i: int) -> None:
        s = session_client().session()
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
    same_worker = inst.worker_pids("charrnn_session") == [pid]
    table.add("sessions", f"churn: {churn} sessions (open, 2 appends, close; 1 in {abandon_every} abandoned), "
              f"{threads} threads", f"{churn * 4 - churn // abandon_every} requests in {seconds:.0f} s, "
              f"failed: {sum(failures.values())} {dict(failures) or ''}", "0 failed", not failures)
    growth = (rss_after - rss_before) / 1024
    table.add("sessions", f"session worker resident memory (VmRSS) over the churn (bounds: {bound:,} sessions, "
              f"{config['handler']['sessions']['state_cache_mib']} + {config['handler']['sessions']['answer_cache_mib']} MiB "
              "of caches)", f"{rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB ({growth:+.1f} MiB), "
              f"same worker: {same_worker}", "flat (< +16 MiB)", growth < 16 and same_worker)


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
    pids = {m: inst.worker_pids(m) for m in ("charrnn", "charrnn_session")}
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
    after_pids = {m: inst.worker_pids(m) for m in pids}
    restarts = inst.worker_deaths() - deaths
    replaced = sum(len(set(pids[m]) - set(after_pids[m])) for m in pids)
    check = new_client(inst).generate("Ma", num=3)
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
    before = inst.worker_pids("charrnn")
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
        except (OSError, ServerError, ValueError, KeyError, IndexError):
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


def section_restart(table: Table, inst: Instance, engine: Engine) -> None:
    client = new_client(inst)
    s = client.session()
    s.type("Ma")
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
    # the client sends the whole text: the restarted worker, which knows nothing, rebuilds it
    try:
        got = s.append("r")
        want = engine.session([(None, SessionRequest(text="Mar"))])[0]
        ok_on = (s.id == old_id and got["text"] == "Mar" and got["completion"] == want["completion"]
                 and [c["char"] for c in got["next"]] == [c["char"] for c in want["next"]])
        on = f"answered as in-process, same id: {ok_on}"
    except ClientError as exc:
        on, ok_on = f"ClientError {exc.status}: {exc.message[:80]}", False
    table.add("restart", f"the session after the restart ({restart:.0f} s): the client's next keystroke", on,
              "answered correctly (rebuilt from its text)", ok_on)
    r = requests.post(f"{inst.inference}/predictions/charrnn_session", data=b'{"append": "i"}', timeout=30,
                      headers={"Authorization": f"Bearer {inst.key()}", "Content-Type": "application/json",
                               SEQUENCE_ID: "soak-before-the-restart"})
    ok_raw = r.status_code == 404 and "send the whole 'text'" in r.json().get("error", "")
    table.add("restart", "raw `append` alone for a session from before the restart",
              f"HTTP {r.status_code}: \"{r.json().get('error', '')[:70]}...\"", "404 saying to send text", ok_raw)
    names = client.generate("Ma")
    ok_new = names == engine.generate([GenerateRequest(prefix="Ma")])[0]
    s.close()
    table.add("restart", "a one-shot request after the restart", f"generate('Ma') = {names}", "works", ok_new)
