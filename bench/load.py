"""A bounded keep-alive HTTP/1.1 load generator on raw asyncio sockets (no third-party tool).

Light enough to drive 1,000+ req/s from one core while the server uses the other: each client
holds one persistent connection and sends pre-encoded requests; a response is read as one
header block (`readuntil`) plus a Content-Length or chunked body. TorchServe answers a 400 with
`connection: close`; the client then reconnects before its next request. A Python thread pool
with `requests` costs several times more CPU per request and would be the bottleneck on 2 cores.

- `Connection`: one persistent connection.
- Workloads (one coroutine per client): `one_shot(bodies)` cycles pre-encoded POST bodies;
  `sessions(names)` opens a session with the first character of a name, appends the rest one
  character per request (header `ts_request_sequence_id` from the first answer), then closes it.
- `run(...)`: `clients` concurrent clients share a budget of `requests` requests (bounded: a
  session takes its whole length from the budget up front, so a run may end a few requests
  over); a warm-up budget first on the same connections, not recorded. Latency is measured in
  the client, from writing a request to its last byte.
- `summarize(...)`: successful answers per wall second, p50/p99 (ms) and errors of one run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

SEQUENCE_ID = b"ts_request_sequence_id"

Record = Callable[..., None]  # (latency s, status or error name, ok[, body of a failed answer])
Workload = Callable[["Connection", "Budget", Record, int], Awaitable[None]]


class Connection:
    """One keep-alive HTTP/1.1 connection to host:port."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.connects += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send one complete request; (status, headers with lower-case names, body)."""
        if self.writer is None:
            await self.open()
        self.writer.write(raw)  # a few hundred bytes: the socket takes them at once
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if b"content-length" in headers:
                body = await self.reader.readexactly(int(headers[b"content-length"]))
            elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = await self._chunked()
            else:  # no length: the body runs to the end of the connection
                body = await self.reader.read()
                headers[b"connection"] = b"close"
        except BaseException:
            self.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, headers, body

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers expected
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


def post(path: str, host: str, port: int, token: str | None, body: bytes, extra: bytes = b"") -> bytes:
    """A complete keep-alive POST with a JSON body, as bytes (`extra`: more header lines)."""
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode() + auth
            + b"Content-Type: application/json\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


class Budget:
    """Requests left to send, shared by the clients of one run (one event loop: no lock); with
    `seconds`, no request (or session) starts after that many seconds either."""

    def __init__(self, requests: int, seconds: float | None = None):
        self.left = requests
        self.deadline = None if seconds is None else time.perf_counter() + seconds
        self.timed_out = False

    def take(self, n: int = 1) -> bool:
        if self.left <= 0:
            return False
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self.timed_out = True
            return False
        self.left -= n
        return True


# ---------------------------------------------------------------- workloads


async def timed(conn: Connection, raw: bytes, record: Record):
    """Send `raw`; (status, headers, body, seconds), or None once a failure to get an answer is
    recorded (the caller moves on)."""
    start = time.perf_counter()
    try:
        status, headers, body = await conn.request(raw)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        record(time.perf_counter() - start, type(exc).__name__, False)
        return None
    return status, headers, body, time.perf_counter() - start


def one_shot(path: str, host: str, port: int, token: str | None, bodies: Sequence[bytes]) -> Workload:
    """Each client cycles through `bodies` (client i starts at body i); an answer counts as ok
    when it is a 200 whose body starts with `expect` (a JSON object with "names")."""
    raws = [post(path, host, port, token, b) for b in bodies]

    async def client(conn: Connection, budget: Budget, record: Record, index: int) -> None:
        i = index
        while budget.take():
            answer = await timed(conn, raws[i % len(raws)], record)
            i += 1
            if answer is None:
                continue
            status, _, body, elapsed = answer
            ok = status == 200 and body.startswith(b'{"names"')
            record(elapsed, status, ok, b"" if ok else body)

    return client


def sessions(path: str, host: str, port: int, token: str | None, names: Sequence[str]) -> Workload:
    """Each client types names one after another (client i starts at name i): a session opened
    with {"append": first character}, one {"append": c} per further character, then
    {"close": true}. A session whose request fails is abandoned (the server expires it)."""
    import json

    scripts = [[json.dumps({"append": c}, ensure_ascii=False).encode() for c in name] + [b'{"close": true}']
               for name in names]

    async def client(conn: Connection, budget: Budget, record: Record, index: int) -> None:
        k = index
        while True:
            script = scripts[k % len(scripts)]
            k += 1
            if not budget.take(len(script)):
                return
            sid = b""
            for j, body in enumerate(script):
                extra = SEQUENCE_ID + b": " + sid + b"\r\n" if sid else b""
                got = await timed(conn, post(path, host, port, token, body, extra), record)
                if got is None:
                    break
                status, headers, answer, elapsed = got
                if j == 0:
                    sid = headers.get(SEQUENCE_ID, b"")
                ok = status == 200 and bool(sid) and answer.startswith(b'{"session"')
                record(elapsed, status if sid or status != 200 else "no session id", ok, b"" if ok else answer)
                if not ok:
                    break

    return client


# ---------------------------------------------------------------- running and summarising


@dataclass
class Sample:
    """One measured run."""

    clients: int
    seconds: float  # wall time of the measured phase
    latencies: list[float] = field(default_factory=list)  # seconds, every request sent
    ok: int = 0
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)  # status code (or error name) -> count
    client_cpu_seconds: float = 0.0  # CPU time of this process (the load generator) meanwhile
    connects: int = 0  # connections opened during the measured phase (reconnects after a close)
    cut_short: bool = False  # the run hit its time cap before its request budget
    error_bodies: dict = field(default_factory=dict)  # status -> the start of the first failed answer's body


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(sample: Sample) -> dict:
    """req/s (successful answers per wall second), p50/p99/mean latency in ms, errors."""
    n = len(sample.latencies)
    return {
        "clients": sample.clients,
        "requests": n,
        "errors": sample.errors,
        "req_per_s": sample.ok / sample.seconds if sample.seconds > 0 else 0.0,
        "p50_ms": percentile(sample.latencies, 50) * 1e3 if n else float("nan"),
        "p99_ms": percentile(sample.latencies, 99) * 1e3 if n else float("nan"),
        "mean_ms": sum(sample.latencies) / n * 1e3 if n else float("nan"),
        "seconds": sample.seconds,
        "statuses": {str(k): v for k, v in sorted(sample.statuses.items(), key=lambda kv: str(kv[0]))},
        "client_cpu_ms_per_request": sample.client_cpu_seconds / n * 1e3 if n else float("nan"),
        "reconnects": sample.connects,
        "cut_short": sample.cut_short,
        "error_bodies": dict(sample.error_bodies),
    }


async def _drive(host: str, port: int, workload: Workload, clients: int, requests: int, warmup: int,
                 measured: Callable[[], AbstractContextManager], max_seconds: float | None,
                 timeout: float) -> Sample:
    conns = [Connection(host, port) for _ in range(clients)]
    try:
        await asyncio.gather(*(c.open() for c in conns))
        if warmup > 0:
            budget = Budget(warmup)
            await asyncio.wait_for(asyncio.gather(*(workload(c, budget, lambda *a: None, i)
                                                    for i, c in enumerate(conns))), timeout)
        sample = Sample(clients, 0.0)
        latencies, statuses = sample.latencies, sample.statuses

        def record(latency: float, status: object, ok: bool, body: bytes = b"") -> None:
            latencies.append(latency)
            statuses[status] += 1
            if ok:
                sample.ok += 1
            else:
                sample.errors += 1
                sample.error_bodies.setdefault(str(status), body[:300].decode("utf-8", "replace"))

        connects = sum(c.connects for c in conns)
        budget = Budget(requests, max_seconds)
        with measured():
            cpu, start = time.process_time(), time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(workload(c, budget, record, i) for i, c in enumerate(conns))),
                                   timeout)
            sample.seconds = time.perf_counter() - start
            sample.client_cpu_seconds = time.process_time() - cpu
        sample.connects = sum(c.connects for c in conns) - connects
        sample.cut_short = budget.timed_out
        return sample
    finally:
        for c in conns:
            c.close()


def run(host: str, port: int, workload: Workload, *, clients: int, requests: int, warmup: int = 0,
        measured: Callable[[], AbstractContextManager] = nullcontext, max_seconds: float | None = None,
        timeout: float = 300.0) -> Sample:
    """`clients` concurrent keep-alive clients send `requests` requests (after `warmup` unrecorded
    ones), none started after `max_seconds`; `measured()` is entered around the measured phase
    only (e.g. a CPU meter). `timeout` bounds each phase in case the server stops answering."""
    if clients < 1 or requests < 1:
        raise ValueError("clients and requests must be >= 1")
    return asyncio.run(_drive(host, port, workload, clients, requests, warmup, measured, max_seconds, timeout))
