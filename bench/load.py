"""Keep-alive HTTP/1.1 load generators on raw asyncio sockets: closed-loop clients (the session
workload; the one-shot closed loop is bench/wrk.py's) and an open-loop generator at a fixed
arrival rate, which no load tool packaged for Debian measures the way it needs (wrk and hey wait
for an answer before the next request: coordinated omission).

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
- `open_loop(...)`: requests scheduled at a fixed rate whether or not earlier ones were
  answered, each on an idle connection of a pool (a new one when all are busy); each latency is
  measured from the request's scheduled send time, so a stalled server is charged for every
  request that queued behind the stall (no coordinated omission). The generator's own lateness
  (actual minus scheduled send) is reported beside it, and is part of those latencies.
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


# ---------------------------------------------------------------- open loop


@dataclass
class OpenSample:
    """One open-loop run: `rate` requests per second scheduled for `seconds`."""

    rate: float
    seconds: float  # scheduled duration
    scheduled: int = 0
    latencies: list[float] = field(default_factory=list)  # from the scheduled send time, s
    service: list[float] = field(default_factory=list)  # from the actual send, s
    lags: list[float] = field(default_factory=list)  # actual minus scheduled send, s
    ok: int = 0
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    error_bodies: dict = field(default_factory=dict)
    wall: float = 0.0  # first scheduled send to last answer
    connections: int = 0  # connections used (the pool, and any opened because all were busy)
    client_cpu_seconds: float = 0.0


def summarize_open(sample: OpenSample) -> dict:
    n = len(sample.latencies)

    def ms(values, q):
        return percentile(values, q) * 1e3 if values else float("nan")

    return {"offered_req_per_s": sample.rate, "scheduled": sample.scheduled, "requests": n, "errors": sample.errors,
            "req_per_s": sample.ok / sample.wall if sample.wall > 0 else 0.0,
            "p50_ms": ms(sample.latencies, 50), "p90_ms": ms(sample.latencies, 90), "p99_ms": ms(sample.latencies, 99),
            "max_ms": max(sample.latencies) * 1e3 if n else float("nan"),
            "service_p50_ms": ms(sample.service, 50), "service_p99_ms": ms(sample.service, 99),
            "lag_p50_ms": ms(sample.lags, 50), "lag_p99_ms": ms(sample.lags, 99),
            "connections": sample.connections, "seconds": sample.wall,
            "statuses": {str(k): v for k, v in sorted(sample.statuses.items(), key=lambda kv: str(kv[0]))},
            "error_bodies": dict(sample.error_bodies),
            "client_cpu_ms_per_request": sample.client_cpu_seconds / n * 1e3 if n else float("nan")}


class _OpenConnection(asyncio.Protocol):
    """One keep-alive connection of the open loop, as a bare asyncio protocol (no stream reader,
    no task per request: a fraction of the CPU per request, which on two cores is taken from
    the server): one request at a time, its answer parsed from the bytes as they arrive
    (Content-Length bodies, as TorchServe sends them; `connection: close` ends the connection)."""

    def __init__(self, pool: _Pool):
        self.pool, self.transport, self.buffer = pool, None, b""
        self.current: tuple[float, float] | None = None  # (scheduled, sent) of the request in flight
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ready.set_result(None)

    def send(self, raw: bytes, scheduled: float, sent: float) -> None:
        self.current = (scheduled, sent)
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.current is None:
            return
        head = self.buffer[:head_end].lower()
        length = 0
        at = head.find(b"content-length:")
        if at >= 0:
            end = head.find(b"\r\n", at)
            length = int(head[at + 15:end if end >= 0 else len(head)])
        if len(self.buffer) < head_end + 4 + length:
            return
        body = self.buffer[head_end + 4:head_end + 4 + length]
        self.buffer = self.buffer[head_end + 4 + length:]
        status = int(head[9:12])
        scheduled, sent = self.current
        self.current = None
        closing = b"connection: close" in head
        self.pool.answered(self, scheduled, sent, status, status == 200 and body.startswith(b'{"names"'), body)
        if closing:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("connection closed"))
        if self.current is not None:  # closed with a request in flight
            scheduled, sent = self.current
            self.current = None
            self.pool.answered(self, scheduled, sent, type(exc).__name__ if exc else "connection closed", False, b"",
                               reusable=False)
        self.pool.lost(self)


class _Pool:
    """The open loop's connections: idle ones are reused, a new one is opened when all are busy
    (up to `max_connections`; past that a request waits for one, its latency still counted from
    its scheduled time)."""

    def __init__(self, host: str, port: int, max_connections: int):
        self.host, self.port, self.max_connections = host, port, max_connections
        self.idle: list[_OpenConnection] = []
        self.open = 0
        self.in_flight = 0
        self.sample: OpenSample | None = None
        self.freed = asyncio.Event()
        self.done = asyncio.Event()

    async def connect(self) -> _OpenConnection:
        loop = asyncio.get_running_loop()
        self.open += 1
        try:
            _, conn = await loop.create_connection(lambda: _OpenConnection(self), self.host, self.port)
            await conn.ready
        except BaseException:
            self.open -= 1
            raise
        return conn

    async def take(self) -> _OpenConnection:
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.transport.is_closing():
                    return conn
            if self.open < self.max_connections:
                return await self.connect()
            self.freed.clear()
            await self.freed.wait()

    def answered(self, conn, scheduled, sent, status, ok, body, reusable: bool = True) -> None:
        if self.sample is not None:
            _open_record(self.sample, asyncio.get_running_loop().time(), scheduled, sent, status, ok, body)
        self.in_flight -= 1
        if reusable and not conn.transport.is_closing():
            self.idle.append(conn)
        self.freed.set()
        if self.in_flight == 0:
            self.done.set()

    def lost(self, conn) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        self.freed.set()

    def close(self) -> None:
        for conn in self.idle:
            conn.transport.close()


async def _open_phase(pool: _Pool, raws: Sequence[bytes], rate: float, seconds: float, sample: OpenSample | None,
                      timeout: float) -> None:
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * seconds))
    pool.sample = sample
    start = loop.time() + 0.01
    for k in range(count):
        scheduled = start + k / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await pool.take()
        pool.in_flight += 1
        conn.send(raws[k % len(raws)], scheduled, loop.time())
    pool.done.clear()  # set whenever nothing was in flight between two sends
    if pool.in_flight:
        try:
            await asyncio.wait_for(pool.done.wait(), timeout)
        except TimeoutError:  # the server stopped answering
            raise RuntimeError(f"open loop: {pool.in_flight} requests still unanswered {timeout:.0f} s after the "
                               "last was sent") from None
    if sample is not None:
        sample.scheduled = count
        sample.wall = (sample.wall or loop.time()) - start
        sample.connections = pool.open


def _open_record(sample: OpenSample, now: float, scheduled: float, sent: float, status, ok: bool,
                 body: bytes) -> None:
    sample.latencies.append(now - scheduled)
    sample.service.append(now - sent)
    sample.lags.append(sent - scheduled)
    sample.statuses[status] += 1
    sample.wall = max(sample.wall, now)
    if ok:
        sample.ok += 1
    else:
        sample.errors += 1
        sample.error_bodies.setdefault(str(status), body[:300].decode("utf-8", "replace"))


async def _open_drive(host, port, raws, rate, seconds, warmup_seconds, connections, max_connections, measured,
                      timeout) -> OpenSample:
    pool = _Pool(host, port, max_connections)
    try:
        pool.idle = list(await asyncio.gather(*(pool.connect() for _ in range(connections))))
        if warmup_seconds > 0:
            await _open_phase(pool, raws, rate, warmup_seconds, None, timeout)
        sample = OpenSample(rate, seconds)
        with measured():
            cpu = time.process_time()
            await _open_phase(pool, raws, rate, seconds, sample, timeout)
            sample.client_cpu_seconds = time.process_time() - cpu
        return sample
    finally:
        pool.close()


def open_loop(host: str, port: int, raws: Sequence[bytes], *, rate: float, seconds: float,
              warmup_seconds: float = 0.0, pool: int = 32, max_connections: int = 512,
              measured: Callable[[], AbstractContextManager] = nullcontext, timeout: float = 30.0) -> OpenSample:
    """Send `raws` (complete requests, cycled) at `rate` per second for `seconds`, after
    `warmup_seconds` at the same rate (not recorded), over a pool of `pool` keep-alive
    connections that grows when every connection has a request in flight (up to
    `max_connections`; past that a request waits for a free connection, its latency counted from
    its scheduled time all the same). Latencies are measured from each request's scheduled send
    time (module docstring); RuntimeError if answers stop coming for `timeout` seconds."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be > 0")
    return asyncio.run(_open_drive(host, port, list(raws), rate, seconds, warmup_seconds, pool, max_connections,
                                   measured, timeout))
