"""`make cluster-test`: three TorchServe replicas on loopback ports behind the gateway (HAProxy,
Debian's package, on the routing rules of the Kubernetes gateway), under a bounded load from
this process, with one replica SIGKILLed mid-load and started again, and the client token
rotated at the end.

What it checks (each a row of the printed table and of the result page, with its target):
- one-shot requests are spread over every replica, and every answer equals the archive's
  handler answering the same body in-process (deploy/reference.py);
- typing sessions send their whole `text` on every keystroke (and the session header they were
  given); every answer equals a fresh in-process session decoding that text, so a session moved
  to another replica (by the consistent hash, or because its replica died) is rebuilt there,
  never lost nor answered wrongly;
- the killed replica (its whole process group: start script, TorchServe, workers) costs at most
  the requests in flight at that moment, each with an HTTP status (the gateway sends a request
  that met a dead replica to another one, so usually none fails); the gateway marks it DOWN
  within its health-check bound and sends it nothing while it is down; started again through the
  same script, it is READY, back UP, and answering requests again;
- a token rotation (current + next, then next only) through gateway.sh's hitless reload fails no
  request, and the old token is refused afterwards.

  python -m deploy.cluster_test --model-store artifacts/model_store [--page docs/results/cluster-test.md]
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from core import contract
from deploy.cluster import ClusterError, Gateway, Replica, new_token
from deploy.gateway import CHECK
from deploy.reference import Reference, differences
from serve.standin import SEQUENCE_ID
from soak.report import Table, log

NAMES = ["Maria", "Antônio", "João", "Lucas", "Beatriz", "Gabriel", "Helena", "Conceição", "Júlia",
         "Rafael", "Larissa", "Thiago", "Valentina", "Davi", "Sofia", "Bruno"]
PREFIXES = ["", "A", "Ma", "Jo", "Lu", "Be", "Ga", "He", "Pe", "Ra", "La", "Th", "Va", "Da", "So", "Br"]
KILLED = 1  # index of the replica that is killed (replica2)


def say(message: str) -> None:
    log(message, "cluster-test")


@dataclass
class Result:
    kind: str  # "oneshot" or "session"
    start: float
    end: float
    status: int  # HTTP status; 0: no HTTP answer (connection refused, reset, timed out)
    wrong: list[str] = field(default_factory=list)


class Load:
    """Client threads against the gateway; each request's outcome recorded in `results`."""

    def __init__(self, url: str, token: str, reference: Reference, seed: int):
        self.url, self.token, self.reference = url, token, reference
        self.results: list[Result] = []
        self.sessions = collections.Counter()  # completed, lost
        self.resent = 0  # requests sent again after the gateway closed their connection
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._seed = seed
        self.threads: list[threading.Thread] = []

    def _post(self, http: requests.Session, kind: str, model: str, body: dict, headers: dict) -> tuple[Result, requests.Response | None]:
        start = time.time()
        for attempt in (0, 1):
            try:
                resp = http.post(f"{self.url}/predictions/{model}", json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {self.token}", **headers})
                break
            except requests.ConnectionError as exc:
                # as serve.client does: a kept-alive connection the gateway closed as the request
                # went out (its reload) is retried once on a new one; a timeout is a failure
                if attempt == 0 and not isinstance(exc, requests.Timeout):
                    with self._lock:
                        self.resent += 1
                    continue
                return Result(kind, start, time.time(), 0), None
            except requests.RequestException:
                return Result(kind, start, time.time(), 0), None
        result = Result(kind, start, time.time(), resp.status_code)
        if resp.status_code == 200:
            status, want = self.reference.answer(model, body)
            try:
                got = resp.json()
            except ValueError:
                got = {"unparsable": resp.text[:200]}
            result.wrong = [f"{model} {body}: reference answered {status}"] if status != 200 else \
                [f"{model} {body}: {d}" for d in differences(got, want)]
        return result, resp

    def _record(self, result: Result) -> None:
        with self._lock:
            self.results.append(result)

    def oneshot(self, i: int) -> None:
        rng = random.Random(self._seed * 100 + i)
        with requests.Session() as http:
            while not self.stop.is_set():
                prefix = rng.choice(PREFIXES)
                body = rng.choice([{"prefix": prefix}, {"prefix": prefix, "num": 3},
                                   {"prefix": prefix, "num": 2, "temperature": 0.8, "seed": rng.randrange(8)}])
                result, _ = self._post(http, "oneshot", contract.MODEL, body, {})
                self._record(result)
                time.sleep(0.01)

    def typist(self, i: int) -> None:
        """Types names a character at a time, sending the whole text on every keystroke."""
        rng = random.Random(self._seed * 1000 + i)
        with requests.Session() as http:
            while not self.stop.is_set():
                name, sid, lost = rng.choice(NAMES), None, False
                for n in range(1, len(name) + 1):
                    body = {"text": name[:n]}
                    result, resp = self._post(http, "session", contract.SESSION_MODEL, body,
                                              {SEQUENCE_ID: sid} if sid else {})
                    self._record(result)
                    if result.status != 200 or result.wrong:
                        lost = True
                    elif resp is not None:
                        sid = resp.headers.get(SEQUENCE_ID, sid)
                    time.sleep(0.03)  # typing
                with self._lock:
                    self.sessions["lost" if lost else "completed"] += 1

    def start(self, oneshot: int, typists: int) -> None:
        self.threads = [threading.Thread(target=self.oneshot, args=(i,), daemon=True) for i in range(oneshot)]
        self.threads += [threading.Thread(target=self.typist, args=(i,), daemon=True) for i in range(typists)]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


LOG_LINE = re.compile(r"^\S+ (?P<date>\S+) \S+ (?P<backend>\w+)/(?P<server>\S+) (?P<status>-?\d+) \S+ "
                      r"(?P<retries>\+?\d+)(?: \{(?P<sent>[^}]*)\})?(?: \{(?P<named>[^}]*)\})?")


def gateway_log(path: Path) -> list[dict]:
    """The gateway's request lines (deploy/k8s/base/gateway/haproxy.cfg.in's log-format); `sid`:
    the session id the request sent, else the one its answer named."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m:
            row = m.groupdict()
            row["sid"] = row.pop("sent") or row.pop("named") or ""
            row.pop("named", None)
            out.append(row)
    return out


def moved_sessions(lines: list[dict]) -> int:
    """Session requests answered by another replica than the session's previous request: each
    one rebuilt that session's state from its text."""
    last, moved = {}, 0
    for line in lines:
        if line["backend"] == "sessions" and line["sid"] and line["status"] == "200":
            if line["sid"] in last and last[line["sid"]] != line["server"]:
                moved += 1
            last[line["sid"]] = line["server"]
    return moved


def run(args) -> Table:
    table = Table("cluster-test")
    root = Path(tempfile.mkdtemp(prefix="charrnn-cluster-"))
    store = Path(args.model_store).resolve()
    replicas = [Replica(f"replica{i + 1}", root / f"replica{i + 1}" / "run", store) for i in range(args.replicas)]
    victim = replicas[KILLED]
    gw = Gateway(root / "gateway", [r.server for r in replicas])
    load, reference, t = None, None, {}
    try:
        say(f"starting {len(replicas)} replicas through deploy/replica.sh (folders under {root})")
        for r in replicas:
            r.start()
        reference = Reference(store)
        for r in replicas:
            try:
                r.wait_ready(args.timeout)
            except ClusterError as exc:
                # a free port picked for one replica (TorchServe's gRPC ports are picked when its
                # config is written) can be taken by another's before it binds: one more start
                say(f"{exc}; starting {r.name} once more")
                r.start()
                r.wait_ready(args.timeout)
        gw.start()
        for r in replicas:
            gw.wait_status(r.name, "UP", 30)
        say(f"gateway on {gw.url}: {', '.join(f'{r.name}={r.address}' for r in replicas)} UP")

        # the one token: refused without it or with another, answered with it
        bad = [requests.post(f"{gw.url}/predictions/{contract.MODEL}", json={"prefix": ""}, timeout=30,
                             headers=h).status_code for h in ({}, {"Authorization": f"Bearer {new_token()}"})]
        table.add("token", "without the token / with another token", " / ".join(map(str, bad)), "401 / 401",
                  bad == [401, 401])

        token = gw.tokens[0]
        load = Load(gw.url, token, reference, args.seed)
        t["load"] = time.time()
        load.start(args.clients, args.typists)
        time.sleep(args.warm)

        t["kill"] = time.time()
        victim.kill()
        say(f"{victim.name}: SIGKILL to its process group")
        gw.wait_status(victim.name, "DOWN", 30)
        t["down"] = time.time()
        say(f"{victim.name}: DOWN in the gateway {t['down'] - t['kill']:.2f} s after the kill")
        time.sleep(args.down)
        t["restart"] = time.time()
        victim.start()
        while "ready" not in t or "up" not in t:  # both, whichever comes first
            if "ready" not in t and victim.ready():
                t["ready"] = time.time()
            if "up" not in t and gw.status(victim.name) == {"UP"}:
                t["up"] = time.time()
            if time.time() - t["restart"] > args.timeout:
                raise ClusterError(f"{victim.name} not READY and UP {args.timeout:.0f} s after its restart")
            if victim.proc.poll() is not None:
                raise ClusterError(f"{victim.name} exited during its restart: see {root / victim.name}")
            time.sleep(0.1)
        say(f"{victim.name}: READY {t['ready'] - t['restart']:.1f} s, UP {t['up'] - t['restart']:.1f} s after its restart")
        time.sleep(args.after)

        # token rotation: current + next, clients move to next, then next only
        t["rotate"] = time.time()
        nxt = new_token()
        gw.set_tokens([token, nxt])
        accepted = _wait_status(gw, nxt, 200, 30)
        load.token = nxt
        time.sleep(1)
        gw.set_tokens([nxt])
        refused = _wait_status(gw, token, 401, 30)
        time.sleep(1)
        t["rotated"] = time.time()
        load.finish()
        t["end"] = time.time()
    finally:
        if load is not None:
            load.finish()
        gw.stop()
        for r in replicas:
            r.stop()
        if reference is not None:
            reference.close()

    lines = gateway_log(gw.log)
    results = load.results
    oneshot = [r for r in results if r.kind == "oneshot"]
    session = [r for r in results if r.kind == "session"]
    statuses = collections.Counter(r.status for r in results)
    wrong = [w for r in results for w in r.wrong]
    # what the kill may cost: requests with no answer or a 5xx (a 4xx is the request's own fault)
    failed = [r for r in results if r.status == 0 or r.status >= 500]
    in_flight = sum(1 for r in results if r.start <= t["kill"] < r.end)
    served = collections.Counter((line["backend"], line["server"]) for line in lines if line["status"] == "200")
    retried = sum(1 for line in lines if line["retries"].lstrip("+") not in ("0", ""))
    sent_while_down = sum(1 for line in lines if line["server"] == victim.name
                          and t["down"] + 0.2 < _epoch(line["date"]) < t["restart"])
    back = [_epoch(line["date"]) for line in lines if line["server"] == victim.name and line["status"] == "200"
            and _epoch(line["date"]) > t["restart"]]
    during_rotation = [r for r in results if t["rotate"] <= r.start <= t["rotated"] and r.status in (0, 401)]
    for r in results:
        if r.status == 0:
            say(f"no answer: a {r.kind} request sent {r.start - t['kill']:+.2f} s from the kill, "
                f"{r.start - t['rotate']:+.2f} s from the rotation")
    detect, bound = t["down"] - t["kill"], CHECK.detect_bound_s()

    table.add("load", "requests (one-shot / session keystrokes)", f"{len(oneshot)} / {len(session)}",
              f"{t['end'] - t['load']:.0f} s of load")
    table.add("load", "answers by status", ", ".join(f"{s or 'no answer'}: {c}" for s, c in sorted(statuses.items())))
    table.add("load", "wrong answers (not equal to the archive's handler in-process)", len(wrong), "0", not wrong)
    table.add("load", "one-shot answers per replica",
              ", ".join(f"{r.name}: {served[('oneshot', r.name)]}" for r in replicas), "every replica > 0",
              all(served[("oneshot", r.name)] > 0 for r in replicas))
    table.add("sessions", "sessions completed / lost", f"{load.sessions['completed']} / {load.sessions['lost']}",
              "lost 0", load.sessions["lost"] == 0 and load.sessions["completed"] > 0)
    table.add("sessions", "keystrokes refused for capacity (429)", statuses[429], "0", statuses[429] == 0)
    table.add("sessions", "keystrokes answered by another replica than the one before (state rebuilt)",
              moved_sessions(lines))
    table.add("kill", "failed requests (no answer or 5xx) / in flight at the kill", f"{len(failed)} / {in_flight}",
              "failed <= in flight, each with an HTTP status",
              len(failed) <= in_flight and all(r.status for r in failed))
    table.add("kill", "requests the gateway sent again to another replica", retried)
    table.add("kill", "kill -> DOWN in the gateway (s)", f"{detect:.2f}", f"<= {bound:g} (health-check bound)",
              detect <= bound)
    table.add("kill", "requests sent to the killed replica while DOWN", sent_while_down, "0", sent_while_down == 0)
    table.add("recovery", "restart -> workers READY (s)", f"{t['ready'] - t['restart']:.1f}")
    table.add("recovery", "restart -> UP in the gateway (s)", f"{t['up'] - t['restart']:.1f}")
    table.add("recovery", "restart -> answering requests again (s)",
              f"{back[0] - t['restart']:.1f}" if back else "never", "answers again", bool(back))
    table.add("token", "rotation: next token accepted / old one refused after (s)",
              f"{accepted:.2f} / {refused:.2f}", f"<= {gw.poll_seconds + 5:g} each",
              max(accepted, refused) <= gw.poll_seconds + 5)
    table.add("token", "requests refused or unanswered during the rotation", len(during_rotation), "0",
              not during_rotation)
    table.add("token", "requests the client sent again (the gateway closed their connection)", load.resent)
    for w in wrong[:5]:
        say(f"wrong answer: {w}")
    if table.failed:
        say(f"kept {root} (the logs of the failed run)")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return table


def _epoch(haproxy_date: str) -> float:
    """HAProxy's %tr (07/Dec/2026:00:10:58.209, local time) as seconds since the epoch."""
    stamp, _, ms = haproxy_date.rpartition(".")
    return time.mktime(time.strptime(stamp, "%d/%b/%Y:%H:%M:%S")) + int(ms) / 1000


def _wait_status(gw: Gateway, token: str, status: int, timeout: float) -> float:
    started = time.monotonic()
    while True:
        got = requests.post(f"{gw.url}/predictions/{contract.MODEL}", json={"prefix": ""}, timeout=30,
                            headers={"Authorization": f"Bearer {token}"}).status_code
        if got == status:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise ClusterError(f"the gateway still answers {got} (not {status}) {timeout:.0f} s after the tokens changed")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Replicas behind the gateway under load, one killed mid-load.")
    p.add_argument("--model-store", default=contract.default_path(contract.MODEL_STORE))
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--clients", type=int, default=4, help="one-shot client threads")
    p.add_argument("--typists", type=int, default=4, help="typing-session threads")
    p.add_argument("--warm", type=float, default=8.0, help="seconds of load before the kill")
    p.add_argument("--down", type=float, default=2.0, help="seconds the killed replica stays down once DOWN")
    p.add_argument("--after", type=float, default=5.0, help="seconds of load once it is back")
    p.add_argument("--timeout", type=float, default=240.0, help="seconds a replica may take to become READY")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--page", help="write the result page here (tools/result_page.py)")
    args = p.parse_args(argv)
    if args.replicas < 2 or not 0 <= KILLED < args.replicas:
        p.error("--replicas must be at least 2 (one is killed)")
    from tools.machine import machine_info
    from tools.result_page import command_line, write_result_page

    machine = machine_info()
    try:
        table = run(args)
    except ClusterError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(table.markdown())
    if args.page:
        body = (f"{args.replicas} TorchServe replicas on loopback ports behind HAProxy (the routing rules of the "
                f"Kubernetes gateway), {args.clients} one-shot clients and {args.typists} typists; "
                f"replica{KILLED + 1} SIGKILLed after {args.warm:g} s of load and started again "
                f"{args.down:g} s after the gateway marked it DOWN; then the client token rotated. "
                "See docs/deploy.md.\n\n" + table.markdown())
        write_result_page(args.page, "A cluster under load: `make cluster-test`", body, machine=machine,
                          command=command_line("deploy.cluster_test", argv))
    if table.failed:
        raise SystemExit(f"cluster-test FAILED: {', '.join(r['figure'] for r in table.failed)}")


if __name__ == "__main__":
    sys.exit(main())
